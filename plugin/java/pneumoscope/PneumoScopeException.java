package pneumoscope;

/**
 * A PneumoScope library call failed. Carries the C status (e.g. -4), its name ("PS_EFORMAT"),
 * the short text ("malformed file") and the detail from ps_last_error() ("dicom: ... in x.dcm").
 */
public class PneumoScopeException extends Exception {
  private static final long serialVersionUID = 1L;
  private final int status;
  private final String statusName;
  private final String detail;

  /** Called from the JNI throw helper (jni/ps_jni.c). */
  public PneumoScopeException(int status, String statusName, String text, String detail) {
    super(statusName + " (" + text + ")" + (detail == null || detail.isEmpty() ? "" : ": " + detail));
    this.status = status;
    this.statusName = statusName;
    this.detail = detail == null ? "" : detail;
  }

  /** For failures found on the Java side (missing library, closed handle, bad argument). */
  public PneumoScopeException(String statusName, String detail, Throwable cause) {
    super(statusName + ": " + detail, cause);
    this.status = statusName.equals("PS_EINVAL") ? -1 : statusName.equals("PS_ESTATE") ? -10 : -9;
    this.statusName = statusName;
    this.detail = detail;
  }

  public int status() { return status; }
  public String statusName() { return statusName; }
  public String detail() { return detail; }
}
