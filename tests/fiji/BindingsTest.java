import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import pneumoscope.Film;
import pneumoscope.GradCam;
import pneumoscope.Model;
import pneumoscope.PneumoScopeException;
import pneumoscope.PsNative;
import pneumoscope.Trainer;

/**
 * Drives the JNI bindings with real and malformed films (zero bytes, truncated, random bytes, a
 * folder, a missing file, limits) and checks that every failure comes back as a
 * PneumoScopeException with a status and a message naming the file, and that the JVM lives on.
 * Expected sizes come from ../shared/data/kaggle/manifest.csv and the DICOM headers (dcmdump.txt).
 *
 *   java -Dpneumoscope.lib.dir=BUILD -cp PneumoScope_.jar:ij.jar:BindingsTest.jar BindingsTest DATA [MODEL]
 *
 * Sections that need the model (Model, GradCam) are added by ModelBindings when it is built.
 */
public class BindingsTest {
  static int failures = 0, checks = 0;
  static File tmp;

  static void check(boolean ok, String what) {
    checks++;
    if (!ok) {
      failures++;
      System.out.println("FAIL: " + what);
    } else {
      System.out.println("ok: " + what);
    }
  }

  interface Body { void run() throws Exception; }

  /** body must throw PneumoScopeException with one of the statuses, and a message containing needle. */
  static PneumoScopeException expectFailure(String what, String needle, Body body, String... statuses) {
    try {
      body.run();
      check(false, what + ": no exception");
      return null;
    } catch (PneumoScopeException e) {
      boolean statusOk = statuses.length == 0;
      for (String s : statuses) statusOk |= s.equals(e.statusName());
      check(statusOk, what + ": status " + e.statusName() + " in " + String.join("|", statuses));
      check(e.getMessage() != null && !e.detail().isEmpty(), what + ": has detail (" + e.getMessage() + ")");
      if (needle != null) check(e.getMessage().contains(needle), what + ": message names " + needle);
      return e;
    } catch (Throwable t) {
      check(false, what + ": wrong exception " + t);
      return null;
    }
  }

  static File write(String name, byte[] data) throws IOException {
    File f = new File(tmp, name);
    Files.write(f.toPath(), data);
    return f;
  }

  static byte[] head(File f, int n) throws IOException {
    try (RandomAccessFile r = new RandomAccessFile(f, "r")) {
      byte[] b = new byte[(int) Math.min(n, r.length())];
      r.readFully(b);
      return b;
    }
  }

  public static void main(String[] args) throws Exception {
    if (args.length < 1) {
      System.err.println("usage: BindingsTest DATA_DIR [MODEL]");
      System.exit(2);
    }
    if (args[0].equals("--no-library")) {
      // run with -Dpneumoscope.lib.dir pointing at an empty folder, from a jar with no library beside it
      for (int i = 0; i < 2; i++) {
        PneumoScopeException e = expectFailure("missing native library (try " + i + ")", PsNative.JNI_LIB,
            () -> Film.read(args[1]), "PS_ENOTFOUND");
        check(e != null && e.getMessage().contains(PsNative.LIB_DIR_PROPERTY) && e.getMessage().contains("lib/linux64"),
            "the message says where it looked and how to point at the library");
      }
      System.out.println(checks + " checks, " + failures + " failures; JVM alive without the library");
      System.exit(failures == 0 ? 0 : 1);
    }
    if (args[0].equals("--oom")) {
      oom(new File(args[1]));
      return;
    }
    File data = new File(args[0]);
    tmp = Files.createTempDirectory("ps-bindings").toFile();
    try {
      run(data, args.length > 1 ? args[1] : null);
    } finally {
      for (File f : tmp.listFiles()) f.delete();
      tmp.delete();
    }
    System.out.println(checks + " checks, " + failures + " failures; JVM alive");
    System.exit(failures == 0 ? 0 : 1);
  }

  static void run(File data, String model) throws Exception {
    PsNative.load();
    check(PsNative.version() != null && !PsNative.version().isEmpty(), "version " + PsNative.version());
    final List<String> logged = new ArrayList<String>();
    PsNative.setLogSink(new PsNative.LogSink() {
      @Override
      public void log(int level, String msg) {
        synchronized (logged) { logged.add(msg); }
      }
    }, PsNative.LOG_DEBUG);

    // ---- real films: sizes from the manifest / DICOM headers -----------------------------------
    File jpeg = new File(data, "kaggle/NORMAL/IM-0117-0001.jpeg"); // manifest: 1422 x 1152
    try (Film f = Film.read(jpeg.getPath())) {
      check(f.width() == 1422 && f.height() == 1152, "jpeg size " + f.width() + "x" + f.height());
      float[] px = f.pixels();
      check(px.length == 1422 * 1152, "jpeg pixel count");
      float lo = 1, hi = 0;
      for (float v : px) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      check(lo >= 0 && hi <= 1 && hi > lo, "jpeg pixels in [0,1]: " + lo + ".." + hi);
      check("jpeg".equals(f.format()), "jpeg format " + f.format());
    }
    File cr = new File(data, "dicom/CR-MONO1-10-chest.dcm"); // dcmdump: 440 x 440, MONOCHROME1, 10 bits
    try (Film f = Film.read(cr.getPath(), true, 0, 0)) {
      check(f.width() == 440 && f.height() == 440, "dicom size");
      check("MONOCHROME1".equals(f.photometric()), "dicom photometric " + f.photometric());
      check(f.bitsStored() == 10, "dicom bits stored " + f.bitsStored());
      check(f.isRaw(), "raw flag");
      check("CR".equals(f.modality()), "dicom modality " + f.modality());
    }

    // ---- malformed input ----------------------------------------------------------------------
    final File empty = write("empty.dcm", new byte[0]);
    expectFailure("zero-byte file", "empty.dcm", () -> Film.read(empty.getPath()), "PS_EFORMAT", "PS_EIO");
    final File truncJpeg = write("truncated.jpeg", head(jpeg, 2000));
    expectFailure("truncated jpeg", "truncated.jpeg", () -> Film.read(truncJpeg.getPath()), "PS_EFORMAT");
    final File truncDcm = write("truncated.dcm", head(cr, 5000));
    expectFailure("truncated dicom", "truncated.dcm", () -> Film.read(truncDcm.getPath()), "PS_EFORMAT");
    File siim = new File(data, "dicom/siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm");
    final File truncJpegDcm = write("truncated-jpeg-dicom.dcm", head(siim, (int) (siim.length() * 2 / 3)));
    expectFailure("truncated JPEG-compressed dicom", "truncated-jpeg-dicom.dcm",
        () -> Film.read(truncJpegDcm.getPath()), "PS_EFORMAT");
    Random rnd = new Random(12345);
    for (int i = 0; i < 5; i++) {
      byte[] b = new byte[1 + rnd.nextInt(200000)];
      rnd.nextBytes(b);
      final File junk = write("random" + i + ".bin", b);
      expectFailure("random bytes " + i, "random" + i, () -> Film.read(junk.getPath()), "PS_EFORMAT");
    }
    // a PNG signature followed by junk, a DICOM preamble + DICM followed by junk
    byte[] png = new byte[4096];
    rnd.nextBytes(png);
    System.arraycopy(new byte[] {(byte) 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}, 0, png, 0, 8);
    final File badPng = write("bad-signature.png", png);
    expectFailure("png signature + junk", "bad-signature.png", () -> Film.read(badPng.getPath()), "PS_EFORMAT");
    byte[] dcm = new byte[4096];
    rnd.nextBytes(dcm);
    System.arraycopy(new byte[] {'D', 'I', 'C', 'M'}, 0, dcm, 128, 4);
    final File badDcm = write("bad-preamble.dcm", dcm);
    expectFailure("DICM preamble + junk", "bad-preamble.dcm", () -> Film.read(badDcm.getPath()), "PS_EFORMAT");
    final File missing = new File(tmp, "does-not-exist.dcm");
    expectFailure("missing file", "does-not-exist.dcm", () -> Film.read(missing.getPath()), "PS_EIO");
    expectFailure("a folder", tmp.getName(), () -> Film.read(tmp.getPath()), "PS_EIO", "PS_EFORMAT");
    expectFailure("max pixels", "IM-0117-0001.jpeg", () -> Film.read(jpeg.getPath(), false, 1000, 0), "PS_ELIMIT");
    expectFailure("max bytes", "IM-0117-0001.jpeg", () -> Film.read(jpeg.getPath(), false, 0, 1000), "PS_ELIMIT");
    expectFailure("null path", null, () -> Film.read(null), "PS_EINVAL");

    // ---- pixels from ImageJ arrays ------------------------------------------------------------
    short[] s16 = new short[6];
    for (int i = 0; i < 6; i++) s16[i] = (short) (1000 * i + 40000); // unsigned 40000..45000
    try (Film f = Film.fromPixels(s16, 3, 2, 40000, 45000, false)) {
      float[] px = f.pixels();
      check(Math.abs(px[0]) < 1e-6 && Math.abs(px[5] - 1) < 1e-6 && Math.abs(px[2] - 0.4f) < 1e-6,
          "short pixels as unsigned through the display range");
    }
    byte[] b8 = {0, (byte) 255, (byte) 128, 64};
    try (Film f = Film.fromPixels(b8, 2, 2, 0, 255, true)) {
      float[] px = f.pixels();
      check(Math.abs(px[0] - 1) < 1e-6 && Math.abs(px[1]) < 1e-6, "inverted byte pixels");
    }
    expectFailure("pixel count mismatch", "does not match", () -> Film.fromPixels(new float[5], 3, 2, 0, 1, false),
        "PS_EINVAL");
    expectFailure("int[] pixels", "int[]", () -> Film.fromPixels(new int[6], 3, 2, 0, 1, false), "PS_EINVAL");
    final Film closed = Film.read(jpeg.getPath());
    closed.close();
    closed.close(); // twice is fine
    expectFailure("closed film", "closed", () -> closed.pixels(), "PS_ESTATE");

    // ---- several threads at once --------------------------------------------------------------
    final String[] films = {jpeg.getPath(), cr.getPath(), siim.getPath(),
        new File(data, "png/nih_00000001_000.png").getPath(), empty.getPath(), truncDcm.getPath()};
    final double[] want = new double[films.length];
    for (int i = 0; i < films.length; i++) want[i] = sumOrStatus(films[i]);
    ExecutorService pool = Executors.newFixedThreadPool(6);
    List<Future<Boolean>> fs = new ArrayList<Future<Boolean>>();
    for (int r = 0; r < 24; r++) {
      final int i = r % films.length;
      fs.add(pool.submit(new Callable<Boolean>() {
        @Override
        public Boolean call() throws Exception { return sumOrStatus(films[i]) == want[i]; }
      }));
    }
    boolean same = true;
    for (Future<Boolean> f : fs) same &= f.get();
    pool.shutdown();
    check(same, "24 concurrent reads (good and bad films) give the sequential results");

    modelChecks(data, model, jpeg, cr);
    if (model != null) escapeChecks(data); // training needs libtorch, as the model checks do
  }

  /** Model binding: a real classification, corrupt model files, threads sharing one model. */
  /**
   * Esc during Train Model: the plugin's listener returns IJ.escapePressed(); a second thread
   * presses Esc (IJ.setKeyDown, what ImageJ's key handler calls) once training has started. The
   * run stops within a few batches with PS_ECANCELLED and leaves a loadable best.safetensors.
   */
  static void escapeChecks(File data) throws Exception {
    File dir = new File(tmp, "esc");
    dir.mkdirs();
    File manifest = new File(dir, "manifest.csv");
    StringBuilder m = new StringBuilder("path,label,subtype,patient_id,split,sha256\n");
    String[] splits = {"train", "train", "train", "val", "test"};
    for (String cls : new String[] {"NORMAL", "PNEUMONIA"}) {
      File[] fs = new File(data, "kaggle/" + cls).listFiles();
      java.util.Arrays.sort(fs);
      for (int i = 0; i < splits.length; i++)
        m.append(fs[i].getPath()).append(',').append(cls).append(',')
            .append(cls.equals("NORMAL") ? "NORMAL" : fs[i].getName().contains("virus") ? "VIRUS" : "BACTERIA").append(",p-").append(cls)
            .append(i).append(',').append(splits[i]).append(",\n");
    }
    Files.write(manifest.toPath(), m.toString().getBytes("UTF-8"));
    Trainer.Options o = new Trainer.Options();
    o.manifest = manifest.getPath();
    o.outdir = new File(dir, "run").getPath();
    o.epochs = 300;
    o.batch = 2;
    o.size = 32;
    o.threads = 2;
    o.patience = -1;
    o.device = "cpu";
    final java.util.concurrent.atomic.AtomicInteger calls = new java.util.concurrent.atomic.AtomicInteger();
    ij.IJ.resetEscape();
    final java.util.concurrent.atomic.AtomicBoolean over = new java.util.concurrent.atomic.AtomicBoolean();
    Thread presser = new Thread(() -> {
      while (calls.get() < 20) {
        if (over.get()) return;
        try { Thread.sleep(20); } catch (InterruptedException e) { return; }
      }
      ij.IJ.setKeyDown(java.awt.event.KeyEvent.VK_ESCAPE);
    });
    presser.start();
    final long[] pressedAt = {0};
    long t0 = System.nanoTime();
    PneumoScopeException cancel = null;
    try {
      Trainer.train(o, (fraction, what) -> {
        calls.incrementAndGet();
        boolean esc = ij.IJ.escapePressed();
        if (esc && pressedAt[0] == 0) pressedAt[0] = System.nanoTime();
        return esc;
      });
    } catch (PneumoScopeException e) {
      cancel = e;
    }
    over.set(true);
    presser.join();
    double after = pressedAt[0] == 0 ? -1 : (System.nanoTime() - pressedAt[0]) / 1e9;
    check(cancel != null && "PS_ECANCELLED".equals(cancel.statusName()),
        "Esc cancels Train Model: " + (cancel == null ? "it ran to the end" : cancel.statusName() + " " + cancel.getMessage()));
    check(after >= 0 && after < 10, "training stopped " + after + " s after Esc (" + calls.get() + " progress calls, "
        + (System.nanoTime() - t0) / 1e9 + " s in all)");
    File best = new File(o.outdir, "best.safetensors");
    check(best.isFile(), "a cancelled run leaves best.safetensors");
    if (best.isFile()) {
      Model mm = Model.load(best.getPath(), "cpu");
      check(mm.numClasses() == 2, "the cancelled run's best.safetensors loads");
      mm.close();
    }
    ij.IJ.resetEscape();

    // Train Model's patient_ages: a range the library refuses is the library's error, before training
    Trainer.Options bad = new Trainer.Options();
    bad.manifest = manifest.getPath();
    bad.outdir = new File(dir, "run-ages").getPath();
    bad.patientAges = "5-1";
    expectFailure("patient ages 5-1", "5-1", () -> Trainer.train(bad, null), "PS_EINVAL");
    check(!new File(bad.outdir, "best.safetensors").exists(), "patient ages 5-1: nothing trained");

    // Esc during Batch Classify Folder (its listener returns IJ.escapePressed() per film): the
    // 651 Kaggle films, Esc pressed after the first few results
    final java.util.concurrent.atomic.AtomicInteger results = new java.util.concurrent.atomic.AtomicInteger();
    Thread presser2 = new Thread(() -> {
      while (results.get() < 5) {
        try { Thread.sleep(5); } catch (InterruptedException e) { return; }
      }
      ij.IJ.setKeyDown(java.awt.event.KeyEvent.VK_ESCAPE);
    });
    presser2.start();
    PneumoScopeException stop = null;
    try (Model bm = Model.load(best.getPath(), "cpu")) {
      bm.infer(new String[] {new File(data, "kaggle").getPath()}, 0, 0,
          (index, file, status, error, label, probs, meta, inDistribution, oodScore, oodReason) -> {
            results.incrementAndGet();
            return ij.IJ.escapePressed();
          });
    } catch (PneumoScopeException e) {
      stop = e;
    }
    results.set(Math.max(results.get(), 5)); // the presser ends even when the run failed early
    presser2.join();
    check(stop != null && "PS_ECANCELLED".equals(stop.statusName()) && results.get() < 651,
        "Esc cancels a batch: " + results.get() + " of 651 films classified, "
        + (stop == null ? "no cancellation" : stop.statusName()));
    ij.IJ.resetEscape();
  }

  static void modelChecks(File data, String model, File jpeg, File cr) throws Exception {
    if (model == null) {
      // built without libtorch: the binding must say so, not crash or pretend
      expectFailure("model without libtorch", "libtorch", () -> Model.load(jpeg.getPath(), "cpu"), "PS_EUNSUPPORTED");
      return;
    }
    final Model m = Model.load(model, "cpu");
    check(m.numClasses() == 2 && m.classes()[0].equals("NORMAL") && m.classes()[1].equals("PNEUMONIA"),
        "model classes " + String.join(",", m.classes()));
    check(m.inputSize() == 224 && m.task().equals("binary") && m.provenance().contains("Fiji test model"),
        "model metadata (input " + m.inputSize() + ", task " + m.task() + ")");
    final File[] films = {jpeg, cr, new File(data, "png/nih_00000001_000.png"),
        new File(data, "kaggle/PNEUMONIA/person1018_virus_1706.jpeg")};
    final float[][] want = new float[films.length][];
    for (int i = 0; i < films.length; i++) {
      try (Film f = Film.read(films[i].getPath())) {
        Model.Prediction p = m.classify(f);
        want[i] = p.probs();
        check(Math.abs(want[i][0] + want[i][1] - 1) < 1e-5 && p.labelName().equals(m.classes()[p.label()])
            && p.label() == (want[i][1] >= m.threshold() ? 1 : 0),
            films[i].getName() + ": P=" + want[i][0] + "," + want[i][1] + " -> " + p.labelName());
        Model.Prediction lo = m.classify(f, 0.0), hi = m.classify(f, 1.0 + 0 * want[i][1]);
        check(lo.label() == 1 && (hi.label() == 1) == (want[i][1] >= 1.0f), films[i].getName() + ": threshold override");
      }
    }
    try (Film raw = Film.read(cr.getPath(), true, 0, 0)) {
      expectFailure("classify a raw film", "raw", () -> m.classify(raw), "PS_EINVAL");
    }
    oodChecks(m, films);
    // several ImageJ threads classifying with one shared model
    ExecutorService pool = Executors.newFixedThreadPool(4);
    List<Future<Boolean>> fs = new ArrayList<Future<Boolean>>();
    for (int r = 0; r < 12; r++) {
      final int i = r % films.length;
      fs.add(pool.submit(new Callable<Boolean>() {
        @Override
        public Boolean call() throws Exception {
          try (Film f = Film.read(films[i].getPath())) {
            float[] p = m.classify(f).probs();
            return Math.abs(p[1] - want[i][1]) < 1e-6;
          }
        }
      }));
    }
    boolean same = true;
    for (Future<Boolean> f : fs) same &= f.get();
    pool.shutdown();
    check(same, "12 concurrent classifications on one shared model equal the sequential ones");
    // Grad-CAM through the binding: map at film size in [0, 1], its probabilities = classify's
    try (Film f = Film.read(jpeg.getPath()); GradCam g = GradCam.compute(m, f, 4, -1, "auto")) {
      float[] cam = g.cam();
      float lo = 1, hi = 0;
      for (float v : cam) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      check(g.width() == f.width() && g.height() == f.height() && cam.length == f.width() * f.height()
          && lo >= 0 && hi <= 1 && hi > 0, "Grad-CAM map at film size in [0,1] (" + lo + ".." + hi + ")");
      check(Math.abs(g.probs()[1] - want[0][1]) < 1e-5 && g.targetClass() == g.predicted() && g.method().equals("cam"),
          "Grad-CAM probabilities = classify's, predicted class explained by CAM");
      check(g.lungs() >= 0 && g.lungs() <= 2 && (Double.isNaN(g.lungFocus()) || (g.lungFocus() >= 0 && g.lungFocus() <= 1)),
          "lung focus " + g.lungFocus() + " with " + g.lungs() + " lungs");
      byte[] mask = g.lungMask();
      check(mask != null && mask.length == cam.length, "lung mask at film size");
    }
    try (Film f = Film.read(jpeg.getPath())) {
      expectFailure("Grad-CAM class out of range", "class", () -> GradCam.compute(m, f, 4, 5, "auto"), "PS_EINVAL");
      expectFailure("Grad-CAM bad method", "method", () -> GradCam.compute(m, f, 4, -1, "magic"), "PS_EINVAL");
    }
    try (Film raw = Film.read(cr.getPath(), true, 0, 0)) {
      expectFailure("Grad-CAM of a raw film", "raw", () -> GradCam.compute(m, raw, 4, -1, "auto"), "PS_EINVAL");
    }
    m.close();
    try (Film f = Film.read(jpeg.getPath())) {
      expectFailure("closed model", "closed", () -> m.classify(f), "PS_ESTATE");
    }

    // corrupt models
    File good = new File(model);
    final File trunc = write("truncated.safetensors", head(good, (int) (good.length() / 2)));
    expectFailure("truncated .safetensors", "truncated.safetensors", () -> Model.load(trunc.getPath(), "cpu"), "PS_EFORMAT");
    final File hdr = write("header-only.safetensors", head(good, 4096));
    expectFailure("header cut .safetensors", "header-only.safetensors", () -> Model.load(hdr.getPath(), "cpu"), "PS_EFORMAT");
    final File zero = write("zero.safetensors", new byte[0]);
    expectFailure("zero-byte model", "zero.safetensors", () -> Model.load(zero.getPath(), "cpu"), "PS_EFORMAT", "PS_EIO");
    byte[] junk = new byte[100000];
    new Random(7).nextBytes(junk);
    final File rnd = write("random.safetensors", junk);
    expectFailure("random-bytes model", "random.safetensors", () -> Model.load(rnd.getPath(), "cpu"), "PS_EFORMAT");
    expectFailure("a film as model", jpeg.getName(), () -> Model.load(jpeg.getPath(), "cpu"), "PS_EFORMAT");
    final File none = new File(tmp, "no-such-model.safetensors");
    expectFailure("missing model", "no-such-model", () -> Model.load(none.getPath(), "cpu"), "PS_EIO", "PS_ENOTFOUND");
    expectFailure("bad device", "device", () -> Model.load(model, "tpu"), "PS_EINVAL");
  }

  /**
   * The out-of-distribution verdict through both paths (Model.classify: ps_infer_image_ood; Model.infer:
   * ps_infer_result): unknown (-1, NaN, "") for radiographs and a model without a detector, the same
   * verdict both ways, a reason exactly when flagged; failed films unknown. Model.resolve
   * (ps_model_resolve): names and paths.
   */
  static void oodChecks(final Model m, File[] films) throws Exception {
    final int[] inDist = new int[films.length];
    final float[] score = new float[films.length];
    for (int i = 0; i < films.length; i++) {
      try (Film f = Film.read(films[i].getPath())) {
        Model.Prediction p = m.classify(f);
        inDist[i] = p.inDistribution();
        score[i] = p.oodScore();
        // the test model has no detector and these films are radiographs (CR) or carry no modality: unknown
        check(p.inDistribution() == -1 && Float.isNaN(p.oodScore()) && p.oodReason().isEmpty(),
            films[i].getName() + ": in_distribution " + p.inDistribution() + ", score " + p.oodScore() + ", reason \""
            + p.oodReason() + "\"");
      }
    }
    final File broken = write("broken.jpeg", head(films[0], 3000));
    String[] paths = new String[films.length + 1];
    for (int i = 0; i < films.length; i++) paths[i] = films[i].getPath();
    paths[films.length] = broken.getPath();
    final List<String> got = new ArrayList<String>();
    int failed = m.infer(paths, 0, 0, new Model.InferListener() {
      @Override
      public boolean result(int index, String file, int status, String error, int label, float[] probs, String[] meta,
          int inDistribution, float oodScore, String oodReason) {
        float want = index < score.length ? score[index] : Float.NaN;
        boolean sameScore = Float.isNaN(oodScore) ? Float.isNaN(want)
            : Math.abs(oodScore - want) <= 1e-3f * Math.max(1f, Math.abs(want));
        boolean same = status == 0
            ? index < inDist.length && inDistribution == inDist[index] && sameScore
                && (inDistribution == 0) == !oodReason.isEmpty()
            : inDistribution == -1 && Float.isNaN(oodScore) && oodReason.isEmpty();
        got.add(new File(file).getName() + (same ? "" : " DIFFERS: " + inDistribution + " " + oodScore + " " + oodReason));
        return false;
      }
    });
    check(failed == 1 && got.size() == paths.length, "infer: " + got.size() + " results, " + failed + " failed");
    boolean all = true;
    for (String g : got) all &= !g.contains("DIFFERS");
    check(all, "infer gives each film the verdict classify gave it; the broken film unknown: " + got);

    check(Model.resolve("/no/such/dir/a.safetensors").equals("/no/such/dir/a.safetensors"), "resolve: a path as given");
    String[][] bundled = {{Model.BINARY, "pneumoscope-binary.safetensors"},
        {Model.THREE_CLASS, "pneumoscope-3class.safetensors"}};
    for (final String[] b : bundled) {
      String srcDir = System.getenv("PS_SOURCE_DIR"); // set by tests/fiji.cmake
      File src = new File(srcDir == null ? "/nonexistent" : srcDir, "sample_data/models/" + b[1]);
      try {
        String path = Model.resolve(b[0]);
        check(path.endsWith("/" + b[1]) && new File(path).isFile() && (srcDir == null || src.isFile()),
            "resolve " + b[0] + " -> " + path);
      } catch (PneumoScopeException e) {
        check("PS_ENOTFOUND".equals(e.statusName()) && e.getMessage().contains(b[1]) && !src.isFile(),
            "resolve " + b[0] + ": not installed, a clear PS_ENOTFOUND naming " + b[1] + " (" + e.getMessage() + ")");
      }
    }
  }

  /**
   * Run with a small heap (-Xmx32m): keep copying a large film's pixels into Java arrays until the
   * JVM runs out of heap inside the native copy. The OutOfMemoryError must arrive as a normal
   * catchable error (the JNI code returns at once), the native film stays usable, and the JVM goes on.
   */
  static void oom(File data) throws Exception {
    PsNative.load();
    File big = new File(data, "kaggle/NORMAL/IM-0117-0001.jpeg"); // 1422 x 1152: 6.5 MB per copy
    List<float[]> hold = new ArrayList<float[]>();
    boolean caught = false;
    String where = "";
    try (Film f = Film.read(big.getPath())) {
      try {
        for (int i = 0; i < 1000; i++) hold.add(f.pixels());
      } catch (OutOfMemoryError e) {
        caught = true;
        where = e.getStackTrace().length > 0 ? e.getStackTrace()[0].getMethodName() : "";
      }
      int held = hold.size();
      hold.clear();
      System.gc();
      check(caught && held > 0 && where.equals("nativePixels"),
          "OutOfMemoryError raised in " + where + " (the native pixel copy) after " + held + " copies");
      check(f.pixels().length == 1422 * 1152, "the film is still usable after the OutOfMemoryError");
    }
    try (Film f = Film.read(big.getPath())) {
      check(f.width() == 1422, "new films read after the OutOfMemoryError");
    }
    System.out.println(checks + " checks, " + failures + " failures; JVM alive after OutOfMemoryError");
    System.exit(failures == 0 ? 0 : 1);
  }

  static double sumOrStatus(String path) {
    try (Film f = Film.read(path)) {
      double s = 0;
      for (float v : f.pixels()) s += v;
      return s;
    } catch (PneumoScopeException e) {
      return e.status() * 1e9;
    }
  }
}
