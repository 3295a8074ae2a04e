// dicom.cpp — DICOM films through DCMTK (and OpenJPEG for JPEG 2000) behind the C API of ps_dicom.h.
//
// Pixels are read straight from the pixel data element (native: getPartialValue of frame 0;
// JPEG / JPEG-LS: DcmPixelData::getUncompressedFrame through DCMTK's codecs after checking the
// frame header against Rows/Columns; RLE: decoded here; JPEG 2000: OpenJPEG), never through
// DCMTK's DicomImage display pipeline. Modality LUT, VOI and MONOCHROME1 handling follow DICOM
// PS3.3 C.11 the way pydicom's apply_modality_lut / apply_voi_lut do (tests/ref/dicom_reference.py).
// Every extern "C" body runs inside PS_PROTECT: no exception crosses the boundary.
// Damaged pixel data a decoder could get past (native pixel data shorter than the header declares,
// libjpeg warnings while DCMTK decodes a JPEG frame) refuses the film, or is listed as a warning
// by ps_dicom_read_warnings.
#include "ps_dicom.h"
#include "ps_internal.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcswap.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>
#include <dcmtk/oflog/appender.h>
#include <dcmtk/oflog/spi/logevent.h>

#ifdef PS_HAVE_OPENJPEG
#include <openjpeg.h>
#endif
#ifdef PS_HAVE_ZLIB
#include <zlib.h>
#endif

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

namespace {

// Internal failure: a status plus the problem (the file name is added at the boundary).
struct Fail {
  int status;
  std::string what;
};

[[noreturn]] PS_PRINTF(2, 3) void fail(int status, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  throw Fail{status, buf};
}

#define PS_PROTECT(path, body)                                                               \
  try {                                                                                      \
    body                                                                                     \
  } catch (const Fail &f_) {                                                                 \
    return ps_error(f_.status, "dicom: %s: %s", (path) ? (path) : "(null)", f_.what.c_str()); \
  } catch (const std::bad_alloc &) {                                                         \
    return ps_error(PS_ENOMEM, "dicom: %s: out of memory", (path) ? (path) : "(null)");      \
  } catch (const std::exception &e_) {                                                       \
    return ps_error(PS_EFORMAT, "dicom: %s: %s", (path) ? (path) : "(null)", e_.what());     \
  } catch (...) {                                                                            \
    return ps_error(PS_EFORMAT, "dicom: %s: unexpected failure while decoding",              \
                    (path) ? (path) : "(null)");                                             \
  }

std::once_flag g_init_once;

// Warnings of the decode running on this thread (nullptr: none running). DCMTK's IJG JPEG decoders
// report libjpeg's warnings ("Corrupt JPEG data: bad Huffman code") only to their logger and go on
// with guessed pixels; the appender below, on the dcmtk.dcmjpeg logger alone, hands them here.
thread_local std::vector<std::string> *tl_jpeg_warnings = nullptr;

class JpegWarningSink : public dcmtk::log4cplus::Appender {
 public:
  ~JpegWarningSink() override { destructorImpl(); }
  void close() override {}

 protected:
  void append(const dcmtk::log4cplus::spi::InternalLoggingEvent &ev) override {
    // libjpeg's messages come from the IJG decoder classes (djdijg8/12/16.cc); DCMTK's own warnings
    // on the data set (a missing attribute it can do without) are not about damaged data.
    if (!tl_jpeg_warnings || ev.getLogLevel() < OFLogger::WARN_LOG_LEVEL) return;
    if (!strstr(ev.getFile().c_str(), "djdijg")) return;
    try {
      tl_jpeg_warnings->push_back(ev.getMessage().c_str());
    } catch (...) {
    }
  }
};

// Collects the IJG decoder's warnings on this thread while alive.
struct JpegWarningScope {
  std::vector<std::string> got;
  JpegWarningScope() { tl_jpeg_warnings = &got; }
  ~JpegWarningScope() { tl_jpeg_warnings = nullptr; }
  JpegWarningScope(const JpegWarningScope &) = delete;
  JpegWarningScope &operator=(const JpegWarningScope &) = delete;
};

void init_dcmtk() {
  std::call_once(g_init_once, [] {
    OFLog::configure(OFLogger::OFF_LOG_LEVEL);  // the library prints nothing
    {
      // ... except that libjpeg's warnings reach JpegWarningSink (and nothing else: additivity off)
      OFLogger jl = OFLog::getLogger("dcmtk.dcmjpeg");
      jl.setAdditivity(false);
      jl.addAppender(dcmtk::log4cplus::SharedAppenderPtr(new JpegWarningSink));
      jl.setLogLevel(OFLogger::WARN_LOG_LEVEL);
    }
    // Colour JPEG / JPEG-LS frames come back colour-by-pixel, YBR converted to RGB.
    DJDecoderRegistration::registerCodecs(EDC_photometricInterpretation, EUC_default, EPC_colorByPixel);
    DJLSDecoderRegistration::registerCodecs(EJLSUC_default, EJLSPC_colorByPixel);
    // DCMTK reads its data dictionary from DCMDICTPATH or the path it was built with (Debian:
    // /usr/share/libdcmtk17). Where neither exists (the self-contained Fiji install on another
    // Linux), the copies shipped beside this library, in dcmtk/, are loaded instead.
    if (!dcmDataDict.isDictionaryLoaded()) {
      char dir[1024];
      ps__lib_folder(dir, sizeof dir);
      if (dir[0]) {
        DcmDataDictionary &d = dcmDataDict.wrlock();
        for (const char *f : {"dcmtk/dicom.dic", "dcmtk/private.dic"})
          d.loadDictionary((std::string(dir) + f).c_str(), OFFalse);
        dcmDataDict.wrunlock();
      }
    }
  });
}

void copy_str(char *dst, size_t cap, const OFString &s) {
  // Trim the padding DICOM allows (trailing spaces / NUL), keep what fits.
  size_t n = s.size();
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\0')) n--;
  size_t b = 0;
  while (b < n && s[b] == ' ') b++;
  size_t len = std::min(n - b, cap - 1);
  memcpy(dst, s.c_str() + b, len);
  dst[len] = '\0';
}

// Make dst valid UTF-8 in place (callers pass it on to Java and JSON): an invalid or truncated
// sequence becomes '?', as do control characters.
void utf8_sanitize(char *dst) {
  unsigned char *p = (unsigned char *)dst;
  while (*p) {
    unsigned c = *p;
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0;
    for (int k = 1; ok && k < len; k++) ok = (p[k] & 0xC0) == 0x80;
    if (ok && len == 2) ok = c >= 0xC2;
    if (ok && len == 3) ok = !(c == 0xE0 && p[1] < 0xA0) && !(c == 0xED && p[1] >= 0xA0);
    if (ok && len == 4) ok = c <= 0xF4 && !(c == 0xF0 && p[1] < 0x90) && !(c == 0xF4 && p[1] >= 0x90);
    if (!ok) {
      *p++ = '?';
      continue;
    }
    if (len == 1 && c < 0x20) *p = '?';
    p += len;
  }
}

void get_str(DcmItem *item, const DcmTagKey &tag, char *dst, size_t cap) {
  OFString s;
  dst[0] = '\0';
  if (item && item->findAndGetOFString(tag, s).good()) copy_str(dst, cap, s);
  utf8_sanitize(dst);
}

bool get_u16(DcmItem *item, const DcmTagKey &tag, Uint16 &v) {
  return item->findAndGetUint16(tag, v).good();
}

bool get_f64(DcmItem *item, const DcmTagKey &tag, double &v, unsigned long pos = 0) {
  Float64 f = 0;
  if (!item->findAndGetFloat64(tag, f, pos).good() || !std::isfinite(f)) return false;
  v = f;
  return true;
}

// ---- probe -------------------------------------------------------------------------------------

bool is_vr(unsigned char a, unsigned char b) {
  static const char *vrs[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "OB",
                              "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM",
                              "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"};
  for (const char *v : vrs)
    if (v[0] == a && v[1] == b) return true;
  return false;
}

// 1 when the bytes look like the start of a DICOM file (with preamble or bare data set).
int probe_bytes(const unsigned char *b, size_t n, long long fsize) {
  if (n >= 132 && memcmp(b + 128, "DICM", 4) == 0) return 1;
  if (n < 8) return 0;
  for (int big = 0; big < 2; big++) {
    unsigned group = big ? (b[0] << 8 | b[1]) : (b[0] | b[1] << 8);
    if (group != 0x0002 && group != 0x0008) continue;
    if (is_vr(b[4], b[5])) return 1;  // explicit VR
    uint32_t len = big ? ((uint32_t)b[4] << 24 | b[5] << 16 | b[6] << 8 | b[7])
                       : (b[4] | b[5] << 8 | b[6] << 16 | (uint32_t)b[7] << 24);
    if (len == 0xFFFFFFFFu || (long long)len + 8 <= fsize) return 1;  // implicit VR
  }
  return 0;
}

// ---- loading -----------------------------------------------------------------------------------

#ifdef PS_HAVE_ZLIB
// A Deflated Explicit VR Little Endian data set is inflated in memory by DCMTK (no lazy loading),
// so a small file could ask for gigabytes: inflate it once here, counting, and refuse anything that
// grows past max_bytes before DCMTK sees it. Walks the (explicit VR little endian) meta group to
// find the transfer syntax and where the data set starts; any oddity is left to DCMTK.
void check_deflate_budget(FILE *f, long long max_bytes) {
  unsigned char h[8];
  if (fseek(f, 132, SEEK_SET) != 0) return;
  long pos = 132;
  std::string ts;
  for (int guard = 0; guard < 1000; guard++) {
    if (fread(h, 1, 8, f) != 8) return;
    unsigned group = h[0] | h[1] << 8, elem = h[2] | h[3] << 8;
    if (group != 0x0002) break;
    if (!is_vr(h[4], h[5])) return;
    uint32_t len;
    long hdr = 8;
    bool long_vr = (h[4] == 'O' && (h[5] == 'B' || h[5] == 'W' || h[5] == 'F')) || (h[4] == 'S' && h[5] == 'Q') ||
                   (h[4] == 'U' && (h[5] == 'T' || h[5] == 'N'));
    if (long_vr) {
      unsigned char l4[4];
      if (fread(l4, 1, 4, f) != 4) return;
      len = l4[0] | l4[1] << 8 | l4[2] << 16 | (uint32_t)l4[3] << 24;
      hdr = 12;
    } else {
      len = h[6] | h[7] << 8;
    }
    if (len > (1u << 20)) return;
    std::string val(len, '\0');
    if (len && fread(&val[0], 1, len, f) != len) return;
    if (elem == 0x0010) ts = val.c_str();
    pos += hdr + (long)len;
  }
  while (!ts.empty() && ts.back() == ' ') ts.pop_back();
  if (ts != "1.2.840.10008.1.2.1.99" || fseek(f, pos, SEEK_SET) != 0) return;
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return;
  std::vector<unsigned char> in(1 << 16), out(1 << 18);
  long long total = 0;
  int zr = Z_OK;
  size_t got;
  while (zr != Z_STREAM_END && (got = fread(in.data(), 1, in.size(), f)) > 0) {
    z.next_in = in.data();
    z.avail_in = (uInt)got;
    while (z.avail_in > 0 && zr != Z_STREAM_END) {
      z.next_out = out.data();
      z.avail_out = (uInt)out.size();
      zr = inflate(&z, Z_NO_FLUSH);
      if (zr != Z_OK && zr != Z_STREAM_END) break;
      total += (long long)(out.size() - z.avail_out);
      if (total > max_bytes) {
        inflateEnd(&z);
        fail(PS_ELIMIT, "deflated data set inflates to more than the limit of %lld bytes (max_bytes)", max_bytes);
      }
    }
    if (zr != Z_OK && zr != Z_STREAM_END) break;  // corrupt stream: DCMTK will report it
  }
  inflateEnd(&z);
}
#endif

void load_file(const char *path, const ps_read_opts *opts, DcmFileFormat &ff) {
  if (!path || !*path) fail(PS_EINVAL, "empty path");
  struct stat st;
  if (stat(path, &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) fail(PS_ENOTFOUND, "no such file");
    fail(PS_EIO, "cannot access the file (%s)", strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) fail(PS_EIO, "is a folder, not a file");
  if (!S_ISREG(st.st_mode)) fail(PS_EIO, "not a regular file");
  long long size = (long long)st.st_size;
  if (size == 0) fail(PS_EFORMAT, "empty file (0 bytes), not DICOM");
  long long max_bytes = (long long)ps_read_opts_max_bytes(opts);
  if (size > max_bytes)
    fail(PS_ELIMIT, "file is %lld bytes, more than the limit of %lld bytes (max_bytes)", size, max_bytes);

  unsigned char head[132];
  std::unique_ptr<FILE, int (*)(FILE *)> f(fopen(path, "rb"), fclose);
  if (!f) fail(PS_EIO, "cannot open the file (%s)", strerror(errno));
  size_t got = fread(head, 1, sizeof head, f.get());
  if (ferror(f.get())) fail(PS_EIO, "cannot read the file");
  if (!probe_bytes(head, got, size))
    fail(PS_EFORMAT, "not a DICOM file (no DICM magic at offset 128 and no DICOM data element at the start)");
  bool has_magic = got >= 132 && memcmp(head + 128, "DICM", 4) == 0;
#ifdef PS_HAVE_ZLIB
  if (has_magic) check_deflate_budget(f.get(), max_bytes);
#endif
  f.reset();

  init_dcmtk();
  if (!dcmDataDict.isDictionaryLoaded()) fail(PS_EUNSUPPORTED, "DCMTK data dictionary is not loaded");
  OFCondition c = ff.loadFile(OFFilename(path), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect);
  if (c.bad() && !has_magic) {
    // ACR-NEMA style fallback: a bare data set, transfer syntax guessed from the first element.
    ff.clear();
    c = ff.loadFile(OFFilename(path), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_dataset);
  }
  if (c.bad()) fail(PS_EFORMAT, "malformed or truncated DICOM (%s)", c.text());
  if (!ff.getDataset()) fail(PS_EFORMAT, "no data set");
}

// ---- patient age -------------------------------------------------------------------------------

// PatientAge (VR AS): "nnnD", "nnnW", "nnnM" or "nnnY". Anonymised archives (NIH ChestX-ray14's
// DICOMs, SIIM, NCCID) often write a bare number of years ("58"): read as years. Anything else,
// or an age outside 0..150 years, is no age.
bool parse_age_string(const char *s, double &years) {
  while (*s == ' ') s++;
  int n = 0, digits = 0;
  for (; *s >= '0' && *s <= '9' && digits < 3; s++, digits++) n = n * 10 + (*s - '0');
  if (!digits) return false;
  double div = 1;
  switch (*s) {
    case 'D': div = 365.25, s++; break;
    case 'W': div = 365.25 / 7, s++; break;
    case 'M': div = 12, s++; break;
    case 'Y': s++; break;
    default: break;
  }
  while (*s == ' ') s++;
  if (*s) return false;
  years = n / div;
  return years <= 150;
}

// Days since 1970-01-01 of a DICOM date (DA, "YYYYMMDD"); false when it is not a real date.
bool da_days(const char *s, long &days) {
  if (strlen(s) != 8) return false;
  long v = 0;
  for (int i = 0; i < 8; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  long y = v / 10000, m = v / 100 % 100, d = v % 100;
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1800 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1]) return false;
  if (m == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) return false;
  y -= m <= 2;  // days from civil (H. Hinnant's algorithm)
  long era = (y >= 0 ? y : y - 399) / 400, yoe = y - era * 400;
  long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1, doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  days = era * 146097 + doe - 719468;
  return true;
}

// The patient's age in years at the examination: PatientAge, else the first examination date
// (study, series, acquisition, content) minus PatientBirthDate when both are real dates 0..150
// years apart (anonymised files often hold placeholders such as 19010101: then no age).
bool patient_age(DcmDataset *ds, double &years) {
  char s[68];
  get_str(ds, DCM_PatientAge, s, sizeof s);
  if (s[0] && parse_age_string(s, years)) return true;
  long birth = 0, exam = 0;
  get_str(ds, DCM_PatientBirthDate, s, sizeof s);
  if (!da_days(s, birth)) return false;
  for (const DcmTagKey &t : {DCM_StudyDate, DCM_SeriesDate, DCM_AcquisitionDate, DCM_ContentDate}) {
    get_str(ds, t, s, sizeof s);
    if (da_days(s, exam)) {
      years = (exam - birth) / 365.25;
      return years >= 0 && years <= 150;
    }
  }
  return false;
}

// ---- metadata ----------------------------------------------------------------------------------

void fill_meta(DcmFileFormat &ff, ps_film_meta *m) {
  DcmDataset *ds = ff.getDataset();
  DcmMetaInfo *mi = ff.getMetaInfo();
  memset(m, 0, sizeof *m);
  m->format = PS_FORMAT_DICOM;
  // Text in another character set (Latin-1, ...) becomes UTF-8; what cannot be converted is
  // replaced by '?' in get_str.
  OFString charset;
  if (ds->findAndGetOFStringArray(DCM_SpecificCharacterSet, charset).good() && !charset.empty() &&
      charset != "ISO_IR 192" && charset != "ISO_IR 6")
    (void)ds->convertToUTF8();
  get_str(ds, DCM_PatientID, m->patient_id, sizeof m->patient_id);
  get_str(ds, DCM_StudyInstanceUID, m->study_uid, sizeof m->study_uid);
  get_str(ds, DCM_SeriesInstanceUID, m->series_uid, sizeof m->series_uid);
  get_str(ds, DCM_SOPInstanceUID, m->sop_uid, sizeof m->sop_uid);
  get_str(ds, DCM_Modality, m->modality, sizeof m->modality);
  get_str(ds, DCM_ViewPosition, m->view_position, sizeof m->view_position);
  get_str(ds, DCM_BodyPartExamined, m->body_part, sizeof m->body_part);
  double age = 0;
  if (patient_age(ds, age)) m->has_patient_age = 1, m->patient_age_years = age;
  get_str(ds, DCM_PhotometricInterpretation, m->photometric, sizeof m->photometric);
  get_str(mi, DCM_TransferSyntaxUID, m->transfer_syntax, sizeof m->transfer_syntax);
  if (!m->transfer_syntax[0]) {
    DcmXfer x(ds->getOriginalXfer());
    if (ds->getOriginalXfer() != EXS_Unknown) copy_str(m->transfer_syntax, sizeof m->transfer_syntax, x.getXferID());
  }
  Uint16 v = 0;
  if (get_u16(ds, DCM_Rows, v)) m->rows = v;
  if (get_u16(ds, DCM_Columns, v)) m->columns = v;
  m->components = get_u16(ds, DCM_SamplesPerPixel, v) ? v : 1;
  Uint16 ba = 0;
  get_u16(ds, DCM_BitsAllocated, ba);
  m->bits_stored = get_u16(ds, DCM_BitsStored, v) ? v : ba;
  if (get_f64(ds, DCM_PixelSpacing, m->pixel_spacing[0], 0)) {
    if (!get_f64(ds, DCM_PixelSpacing, m->pixel_spacing[1], 1)) m->pixel_spacing[1] = m->pixel_spacing[0];
  } else if (get_f64(ds, DCM_ImagerPixelSpacing, m->pixel_spacing[0], 0)) {
    if (!get_f64(ds, DCM_ImagerPixelSpacing, m->pixel_spacing[1], 1)) m->pixel_spacing[1] = m->pixel_spacing[0];
    m->pixel_spacing_is_imager = 1;
  }
  m->rescale_slope = 1.0;
  m->rescale_intercept = 0.0;
  get_f64(ds, DCM_RescaleSlope, m->rescale_slope);
  get_f64(ds, DCM_RescaleIntercept, m->rescale_intercept);
  double c = 0, w = 0;
  if (get_f64(ds, DCM_WindowCenter, c) && get_f64(ds, DCM_WindowWidth, w) && w > 0) {
    m->window_center = c;
    m->window_width = w;
  }
  Sint32 nf = 1;
  if (ds->findAndGetSint32(DCM_NumberOfFrames, nf).bad()) nf = 1;
  m->frames = nf;
}

// ---- pixel geometry and checks -----------------------------------------------------------------

struct Geometry {
  int rows = 0, cols = 0, spp = 1, frames = 1;
  int bits_alloc = 0, bits_stored = 0, high_bit = 0, pixrep = 0, planar = 0;
  std::string photometric;
  size_t frame_bytes = 0;  // native bytes of one frame
};

std::string trimmed(DcmItem *ds, const DcmTagKey &tag) {
  char buf[68];
  get_str(ds, tag, buf, sizeof buf);
  return buf;
}

Geometry check_geometry(DcmDataset *ds, const ps_read_opts *opts) {
  Geometry g;
  Uint16 v = 0;
  if (!get_u16(ds, DCM_Rows, v)) fail(PS_EFORMAT, "no Rows (0028,0010)");
  g.rows = v;
  if (!get_u16(ds, DCM_Columns, v)) fail(PS_EFORMAT, "no Columns (0028,0011)");
  g.cols = v;
  if (g.rows <= 0 || g.cols <= 0) fail(PS_EFORMAT, "empty image: Rows x Columns is %d x %d", g.rows, g.cols);
  Sint32 nf = 1;
  if (ds->findAndGetSint32(DCM_NumberOfFrames, nf).bad()) nf = 1;
  if (nf < 1) fail(PS_EFORMAT, "NumberOfFrames is %d", (int)nf);
  g.frames = nf;
  g.spp = get_u16(ds, DCM_SamplesPerPixel, v) ? v : 1;
  if (g.spp != 1 && g.spp != 3) fail(PS_EUNSUPPORTED, "SamplesPerPixel %d (only 1 or 3)", g.spp);
  if (!get_u16(ds, DCM_BitsAllocated, v)) fail(PS_EFORMAT, "no BitsAllocated (0028,0100)");
  g.bits_alloc = v;
  if (g.bits_alloc != 8 && g.bits_alloc != 16 && g.bits_alloc != 32)
    fail(PS_EUNSUPPORTED, "BitsAllocated %d (only 8, 16 or 32)", g.bits_alloc);
  g.bits_stored = get_u16(ds, DCM_BitsStored, v) ? v : g.bits_alloc;
  if (g.bits_stored < 1 || g.bits_stored > g.bits_alloc)
    fail(PS_EFORMAT, "BitsStored %d with BitsAllocated %d", g.bits_stored, g.bits_alloc);
  g.high_bit = get_u16(ds, DCM_HighBit, v) ? v : g.bits_stored - 1;
  if (g.high_bit < g.bits_stored - 1 || g.high_bit >= g.bits_alloc)
    fail(PS_EFORMAT, "HighBit %d with BitsStored %d and BitsAllocated %d", g.high_bit, g.bits_stored, g.bits_alloc);
  g.pixrep = get_u16(ds, DCM_PixelRepresentation, v) ? v : 0;
  if (g.pixrep > 1) fail(PS_EFORMAT, "PixelRepresentation %d", g.pixrep);
  g.planar = get_u16(ds, DCM_PlanarConfiguration, v) ? v : 0;
  g.photometric = trimmed(ds, DCM_PhotometricInterpretation);
  if (g.photometric.empty()) g.photometric = g.spp == 1 ? "MONOCHROME2" : "RGB";
  const std::string &p = g.photometric;
  bool mono = p == "MONOCHROME1" || p == "MONOCHROME2";
  bool colour = p == "RGB" || p == "YBR_FULL" || p == "YBR_FULL_422" || p == "YBR_ICT" || p == "YBR_RCT";
  if (!mono && !colour) fail(PS_EUNSUPPORTED, "photometric interpretation '%s' not supported", p.c_str());
  if ((mono && g.spp != 1) || (colour && g.spp != 3))
    fail(PS_EFORMAT, "photometric interpretation %s with SamplesPerPixel %d", p.c_str(), g.spp);

  long long max_px = (long long)ps_read_opts_max_pixels(opts);
  long long px = (long long)g.rows * g.cols;
  if (px * g.frames > max_px)
    fail(PS_ELIMIT, "%d x %d x %d frames = %lld pixels, more than the limit of %lld (max_pixels)", g.rows, g.cols,
         g.frames, px * g.frames, max_px);
  long long bytes = px * g.spp * (g.bits_alloc / 8);
  if (p == "YBR_FULL_422") bytes = px * 2 * (g.bits_alloc / 8);
  if (bytes > 0xFFFFFFF0LL) fail(PS_ELIMIT, "one frame needs %lld bytes (more than 4 GiB)", bytes);
  g.frame_bytes = (size_t)bytes;
  return g;
}

// ---- JPEG 2000 through OpenJPEG ----------------------------------------------------------------

bool is_j2k(E_TransferSyntax x) {
  return x == EXS_JPEG2000LosslessOnly || x == EXS_JPEG2000 || x == EXS_JPEG2000MulticomponentLosslessOnly ||
         x == EXS_JPEG2000Multicomponent;
}

// Concatenated fragments of frame 0 (fragment 0 is the basic offset table).
std::vector<uint8_t> first_frame_fragments(DcmPixelData *pix, E_TransferSyntax xfer, int frames,
                                           unsigned long max_fragments = ~0UL) {
  DcmPixelSequence *seq = nullptr;
  if (pix->getEncapsulatedRepresentation(xfer, nullptr, seq).bad() || !seq)
    fail(PS_EFORMAT, "encapsulated pixel data expected for transfer syntax %s", DcmXfer(xfer).getXferName());
  unsigned long n = seq->card();
  if (n < 2) fail(PS_EFORMAT, "encapsulated pixel data holds no fragment");
  std::vector<uint8_t> out;
  for (unsigned long i = 1; i < n && i <= max_fragments; i++) {
    DcmPixelItem *it = nullptr;
    if (seq->getItem(it, i).bad() || !it) fail(PS_EFORMAT, "cannot read pixel data fragment %lu", i);
    Uint8 *p = nullptr;
    Uint32 len = it->getLength();
    if (len == 0) continue;
    if (it->getUint8Array(p).bad() || !p) fail(PS_EFORMAT, "cannot read pixel data fragment %lu (truncated?)", i);
    out.insert(out.end(), p, p + len);
    // A frame ends with the EOC marker FFD9 (possibly followed by one pad byte).
    size_t m = out.size();
    bool eoc = (m >= 2 && out[m - 2] == 0xFF && out[m - 1] == 0xD9) ||
               (m >= 3 && out[m - 3] == 0xFF && out[m - 2] == 0xD9 && out[m - 1] == 0x00);
    if (frames > 1 && eoc) break;
  }
  return out;
}

bool is_jpeg_family(E_TransferSyntax x) {
  switch (x) {
    case EXS_JPEGProcess1: case EXS_JPEGProcess2_4: case EXS_JPEGProcess3_5: case EXS_JPEGProcess6_8:
    case EXS_JPEGProcess7_9: case EXS_JPEGProcess10_12: case EXS_JPEGProcess11_13: case EXS_JPEGProcess14:
    case EXS_JPEGProcess15: case EXS_JPEGProcess16_18: case EXS_JPEGProcess17_19: case EXS_JPEGProcess20_22:
    case EXS_JPEGProcess21_23: case EXS_JPEGProcess24_26: case EXS_JPEGProcess25_27: case EXS_JPEGProcess28:
    case EXS_JPEGProcess29: case EXS_JPEGProcess14SV1: case EXS_JPEGLSLossless: case EXS_JPEGLSLossy:
      return true;
    default:
      return false;
  }
}

// The codecs trust Rows/Columns and pad or cut a frame that disagrees with its own header: compare
// the SOF (JPEG) / SOF55 (JPEG-LS) size of the first fragment with the data set first.
void check_jpeg_size(DcmPixelData *pix, E_TransferSyntax xfer, const Geometry &g) {
  std::vector<uint8_t> f = first_frame_fragments(pix, xfer, g.frames, 1);
  size_t i = 0, n = f.size();
  if (n < 4 || f[0] != 0xFF || f[1] != 0xD8) fail(PS_EFORMAT, "JPEG frame does not start with an SOI marker");
  i = 2;
  while (i + 4 <= n) {
    if (f[i] != 0xFF) fail(PS_EFORMAT, "corrupt JPEG marker segment at byte %zu of the first fragment", i);
    uint8_t m = f[i + 1];
    if (m == 0xFF) { i++; continue; }
    if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { i += 2; continue; }
    size_t len = (size_t)f[i + 2] << 8 | f[i + 3];
    bool sof = (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) || m == 0xF7;
    if (sof) {
      if (i + 9 > n) break;
      int h = f[i + 5] << 8 | f[i + 6], w = f[i + 7] << 8 | f[i + 8];
      if ((h != 0 && h != g.rows) || w != g.cols)
        fail(PS_EFORMAT, "JPEG frame is %d x %d but Rows x Columns is %d x %d", h, w, g.rows, g.cols);
      return;
    }
    if (m == 0xDA || m == 0xD9) break;  // start of scan before any SOF
    i += 2 + len;
  }
  fail(PS_EFORMAT, "no JPEG frame header (SOF) in the first fragment");
}

// RLE Lossless (PS3.5 Annex G) frame 0, decoded here rather than by DCMTK so that a frame whose
// segments do not hold exactly Rows x Columns bytes is an error, not padding. Output: host-endian
// samples, colour-by-pixel.
void decode_rle(const std::vector<uint8_t> &f, const Geometry &g, std::vector<uint8_t> &out) {
  size_t npix = (size_t)g.rows * g.cols;
  int bytes = g.bits_alloc / 8;
  int nseg_want = g.spp * bytes;
  if (f.size() < 64) fail(PS_EFORMAT, "RLE frame is only %zu bytes (no RLE header)", f.size());
  auto u32 = [&](size_t o) { return (uint32_t)f[o] | (uint32_t)f[o + 1] << 8 | (uint32_t)f[o + 2] << 16 | (uint32_t)f[o + 3] << 24; };
  uint32_t nseg = u32(0);
  if ((int)nseg != nseg_want)
    fail(PS_EFORMAT, "RLE frame has %u segments, %d samples x %d bytes need %d", nseg, g.spp, bytes, nseg_want);
  out.assign(npix * nseg_want + 2, 0);
  for (uint32_t sgi = 0; sgi < nseg; sgi++) {
    size_t start = u32(4 + 4 * sgi), end = sgi + 1 < nseg ? u32(8 + 4 * sgi) : f.size();
    if (start < 64 || start > end || end > f.size()) fail(PS_EFORMAT, "RLE segment %u offsets are out of the frame", sgi);
    int sample = (int)sgi / bytes, byte = bytes - 1 - (int)sgi % bytes;  // segments: MSB first
    size_t pos = start, px = 0;
    uint8_t *dst = out.data() + (size_t)sample * bytes + byte;
    size_t step = (size_t)nseg_want;
    while (pos < end && px < npix) {
      int8_t hdr = (int8_t)f[pos++];
      if (hdr >= 0) {
        size_t cnt = (size_t)hdr + 1;
        if (pos + cnt > end || px + cnt > npix) fail(PS_EFORMAT, "RLE segment %u overruns the frame", sgi);
        for (size_t k = 0; k < cnt; k++) dst[(px + k) * step] = f[pos + k];
        pos += cnt;
        px += cnt;
      } else if (hdr != -128) {
        size_t cnt = (size_t)(1 - hdr);
        if (pos >= end || px + cnt > npix) fail(PS_EFORMAT, "RLE segment %u overruns the frame", sgi);
        for (size_t k = 0; k < cnt; k++) dst[(px + k) * step] = f[pos];
        pos++;
        px += cnt;
      }
    }
    if (px != npix) fail(PS_EFORMAT, "RLE segment %u holds %zu pixels, Rows x Columns is %zu", sgi, px, npix);
  }
}

#ifdef PS_HAVE_OPENJPEG
struct MemStream {
  const uint8_t *data;
  size_t size, pos;
};

OPJ_SIZE_T ms_read(void *buf, OPJ_SIZE_T n, void *u) {
  MemStream *m = static_cast<MemStream *>(u);
  if (m->pos >= m->size) return (OPJ_SIZE_T)-1;
  size_t k = std::min((size_t)n, m->size - m->pos);
  memcpy(buf, m->data + m->pos, k);
  m->pos += k;
  return k;
}
OPJ_OFF_T ms_skip(OPJ_OFF_T n, void *u) {
  MemStream *m = static_cast<MemStream *>(u);
  if (n < 0) {
    if ((size_t)(-n) > m->pos) return -1;
    m->pos -= (size_t)(-n);
    return n;
  }
  size_t k = std::min((size_t)n, m->size - m->pos);
  m->pos += k;
  return (OPJ_OFF_T)k;
}
OPJ_BOOL ms_seek(OPJ_OFF_T p, void *u) {
  MemStream *m = static_cast<MemStream *>(u);
  if (p < 0 || (size_t)p > m->size) return OPJ_FALSE;
  m->pos = (size_t)p;
  return OPJ_TRUE;
}
void opj_quiet(const char *, void *) {}
void opj_keep_error(const char *msg, void *u) {
  std::string *s = static_cast<std::string *>(u);
  if (s->empty() && msg) {
    *s = msg;
    while (!s->empty() && (s->back() == '\n' || s->back() == ' ')) s->pop_back();
  }
}

// opj_codec_t and opj_stream_t are both void *: one deleter each.
struct OpjCodecFree {
  void operator()(opj_codec_t *c) const { opj_destroy_codec(c); }
};
struct OpjStreamFree {
  void operator()(opj_stream_t *s) const { opj_stream_destroy(s); }
};
struct OpjImageFree {
  void operator()(opj_image_t *i) const { opj_image_destroy(i); }
};

// Decode a J2K codestream or JP2 file into per-sample int values (H, W, spp) colour-by-pixel.
void decode_j2k(const std::vector<uint8_t> &cs, const Geometry &g, std::vector<double> &vals) {
  if (cs.size() < 12) fail(PS_EFORMAT, "JPEG 2000 frame is only %zu bytes", cs.size());
  bool jp2 = cs[0] == 0 && cs[1] == 0 && cs[2] == 0 && cs[3] == 0x0C && cs[4] == 0x6A;
  if (!jp2 && !(cs[0] == 0xFF && cs[1] == 0x4F)) fail(PS_EFORMAT, "JPEG 2000 frame does not start with SOC or a JP2 signature");
  MemStream ms{cs.data(), cs.size(), 0};
  std::unique_ptr<opj_stream_t, OpjStreamFree> st(opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE));
  std::unique_ptr<opj_codec_t, OpjCodecFree> codec(opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K));
  if (!st || !codec) throw std::bad_alloc();
  opj_stream_set_user_data(st.get(), &ms, nullptr);
  opj_stream_set_user_data_length(st.get(), cs.size());
  opj_stream_set_read_function(st.get(), ms_read);
  opj_stream_set_skip_function(st.get(), ms_skip);
  opj_stream_set_seek_function(st.get(), ms_seek);
  std::string err;
  opj_set_info_handler(codec.get(), opj_quiet, nullptr);
  opj_set_warning_handler(codec.get(), opj_quiet, nullptr);
  opj_set_error_handler(codec.get(), opj_keep_error, &err);
  opj_dparameters_t prm;
  opj_set_default_decoder_parameters(&prm);
  if (!opj_setup_decoder(codec.get(), &prm)) fail(PS_EFORMAT, "OpenJPEG decoder setup failed");
  opj_image_t *raw = nullptr;
  if (!opj_read_header(st.get(), codec.get(), &raw))
    fail(PS_EFORMAT, "bad JPEG 2000 header (%s)", err.empty() ? "OpenJPEG" : err.c_str());
  std::unique_ptr<opj_image_t, OpjImageFree> img(raw);
  long long w = (long long)img->x1 - img->x0, h = (long long)img->y1 - img->y0;
  if (w != g.cols || h != g.rows)
    fail(PS_EFORMAT, "JPEG 2000 frame is %lld x %lld but Rows x Columns is %d x %d", w, h, g.rows, g.cols);
  if ((int)img->numcomps < g.spp) fail(PS_EFORMAT, "JPEG 2000 frame has %u components, expected %d", img->numcomps, g.spp);
  if (!opj_decode(codec.get(), st.get(), img.get()) || !opj_end_decompress(codec.get(), st.get()))
    fail(PS_EFORMAT, "JPEG 2000 decoding failed (%s)", err.empty() ? "truncated or corrupt codestream" : err.c_str());
  size_t npix = (size_t)g.rows * g.cols;
  for (int c = 0; c < g.spp; c++) {
    const opj_image_comp_t &cp = img->comps[c];
    if (!cp.data || cp.w != (OPJ_UINT32)g.cols || cp.h != (OPJ_UINT32)g.rows)
      fail(PS_EUNSUPPORTED, "JPEG 2000 component %d is subsampled or missing", c);
  }
  vals.resize(npix * g.spp);
  for (size_t i = 0; i < npix; i++)
    for (int c = 0; c < g.spp; c++) vals[i * g.spp + c] = img->comps[c].data[i];
}
#endif

// ---- frame 0 as stored values ----------------------------------------------------------------

// Stored value of sample k of a host-endian buffer: HighBit/BitsStored masking, sign extension.
struct SampleReader {
  const uint8_t *buf;
  int bytes, shift, bits;
  uint64_t mask;
  bool sgn;
  double operator()(size_t k) const {
    uint64_t raw;
    if (bytes == 1) raw = buf[k];
    else if (bytes == 2) {
      uint16_t t;
      memcpy(&t, buf + 2 * k, 2);
      raw = t;
    } else {
      uint32_t t;
      memcpy(&t, buf + 4 * k, 4);
      raw = t;
    }
    uint64_t v = (raw >> shift) & mask;
    if (sgn && (v >> (bits - 1)) & 1) return (double)((int64_t)v - ((int64_t)1 << bits));
    return (double)v;
  }
};

// Frame 0 as stored values (exact in a double), colour-by-pixel (H, W, spp); colour_model: the
// photometric interpretation of those samples.
void read_frame0(DcmDataset *ds, const Geometry &g, std::vector<double> &vals, std::string &colour_model,
                 std::vector<std::string> *warn) {
  DcmElement *el = nullptr;
  if (ds->findAndGetElement(DCM_PixelData, el).bad() || !el) {
    if (ds->tagExists(DCM_FloatPixelData) || ds->tagExists(DCM_DoubleFloatPixelData))
      fail(PS_EUNSUPPORTED, "float pixel data not supported");
    fail(PS_EFORMAT, "no pixel data (7FE0,0010)");
  }
  if (el->ident() != EVR_PixelData) fail(PS_EFORMAT, "pixel data element has an unexpected type");
  DcmPixelData *pix = static_cast<DcmPixelData *>(el);
  E_TransferSyntax xfer = ds->getOriginalXfer();
  DcmXfer xf(xfer);
  size_t npix = (size_t)g.rows * g.cols;
  colour_model = g.photometric;
  int planar = g.planar;
  std::vector<uint8_t> buf;

  if (is_j2k(xfer)) {
#ifdef PS_HAVE_OPENJPEG
    std::vector<uint8_t> cs = first_frame_fragments(pix, xfer, g.frames);
    decode_j2k(cs, g, vals);
    if (g.spp == 3 && (g.photometric == "YBR_ICT" || g.photometric == "YBR_RCT")) colour_model = "RGB";
    return;
#else
    fail(PS_EUNSUPPORTED, "JPEG 2000 transfer syntax (%s) not supported: built without OpenJPEG", xf.getXferID());
#endif
  }

  Uint32 length = el->getLength();
  E_TransferSyntax orig = EXS_Unknown;
  const DcmRepresentationParameter *orig_param = nullptr;
  pix->getOriginalRepresentationKey(orig, orig_param);
  bool encapsulated = DcmXfer(orig).isEncapsulated() || xf.isEncapsulated();
  if (!encapsulated) {
    // Every frame the header declares must be there, not just frame 0 (pydicom refuses such a
    // file too); collecting warnings, the missing samples of frame 0 read as 0.
    if (length == DCM_UndefinedLength)
      fail(PS_EFORMAT, "native pixel data of undefined length (no fragments for a native transfer syntax)");
    unsigned long long declared = (unsigned long long)g.frame_bytes * (unsigned long long)g.frames;
    size_t have = std::min((size_t)length, g.frame_bytes);
    if ((unsigned long long)length < declared) {
      char what[400];
      snprintf(what, sizeof what,
               "pixel data is %lu bytes, shorter than the %llu bytes its header declares (%d frame%s x %d rows x "
               "%d columns x %d sample%s x %d bits)",
               (unsigned long)length, declared, g.frames, g.frames == 1 ? "" : "s", g.rows, g.cols, g.spp,
               g.spp == 1 ? "" : "s", g.bits_alloc);
      if (!warn) fail(PS_EFORMAT, "%s", what);
      warn->push_back(std::string(what) + (have < g.frame_bytes ? "; the missing samples of frame 0 read as 0" : ""));
    }
    buf.assign(g.frame_bytes + 2, 0);
    if (have > 0) {
      OFCondition c = el->getPartialValue(buf.data(), 0, (Uint32)have, nullptr);
      if (c.bad()) fail(PS_EFORMAT, "cannot read the pixel data (%s; truncated file?)", c.text());
    }
  } else if (xfer == EXS_RLELossless) {
    // one fragment per frame (PS3.5 G.2); a single-frame file may still split it
    decode_rle(first_frame_fragments(pix, xfer, g.frames, g.frames > 1 ? 1 : ~0UL), g, buf);
    if (buf.size() > 2) {
      // segments were assembled little-endian; make them host order (x86/ARM LE: nothing to do)
      if (gLocalByteOrder == EBO_BigEndian && g.bits_alloc > 8) swapBytes(buf.data(), (Uint32)(buf.size() - 2), g.bits_alloc / 8);
    }
    planar = 0;
  } else {
    if (is_jpeg_family(xfer)) check_jpeg_size(pix, xfer, g);
    Uint32 fsize = 0;
    if (pix->getUncompressedFrameSize(ds, fsize).bad()) fail(PS_EFORMAT, "cannot size the decoded frame");
    size_t need = std::max<size_t>(fsize, (size_t)npix * g.spp * (g.bits_alloc / 8));
    buf.resize(need + (need & 1) + 2);
    Uint32 start = 0;
    OFString model;
    JpegWarningScope jw;
    OFCondition c = pix->getUncompressedFrame(ds, 0, start, buf.data(), (Uint32)(buf.size() & ~(size_t)1), model, nullptr);
    if (c.bad()) {
      if (c == EC_CannotChangeRepresentation)
        fail(PS_EUNSUPPORTED, "transfer syntax %s (%s) not supported (%s)", xf.getXferName(), xf.getXferID(), c.text());
      if (!jw.got.empty())
        fail(PS_EFORMAT, "cannot decode %s pixel data (%s; libjpeg: %s)", xf.getXferName(), c.text(), jw.got[0].c_str());
      fail(PS_EFORMAT, "cannot decode %s pixel data (%s)", xf.getXferName(), c.text());
    }
    if (!jw.got.empty()) {
      if (!warn) fail(PS_EFORMAT, "damaged %s pixel data (libjpeg: %s)", xf.getXferName(), jw.got[0].c_str());
      for (const std::string &w : jw.got) warn->push_back(std::string("libjpeg: ") + w);
    }
    if (!model.empty()) colour_model = model.c_str();
    if (g.spp == 3) planar = 0;  // JPEG / JPEG-LS decoders were registered colour-by-pixel
    if (colour_model == "YBR_FULL_422") colour_model = "YBR_FULL";  // decoders expand 4:2:2
  }

  int bytes = g.bits_alloc / 8;
  SampleReader rd{buf.data(), bytes, g.high_bit + 1 - g.bits_stored, g.bits_stored,
                  g.bits_stored >= 64 ? ~0ULL : ((1ULL << g.bits_stored) - 1), g.pixrep == 1};
  vals.resize(npix * g.spp);
  if (g.spp == 1) {
    for (size_t i = 0; i < npix; i++) vals[i] = rd(i);
  } else if (!encapsulated && g.photometric == "YBR_FULL_422") {
    // Native 4:2:2: Y0 Y1 Cb Cr per pixel pair; luminance is Y.
    for (size_t i = 0; i < npix; i++) {
      size_t pair = i / 2;
      vals[i * 3 + 0] = rd(pair * 4 + (i & 1));
      vals[i * 3 + 1] = rd(pair * 4 + 2);
      vals[i * 3 + 2] = rd(pair * 4 + 3);
    }
    colour_model = "YBR_FULL";
  } else if (planar == 1) {
    for (size_t i = 0; i < npix; i++)
      for (int c = 0; c < 3; c++) vals[i * 3 + c] = rd((size_t)c * npix + i);
  } else {
    for (size_t k = 0; k < npix * 3; k++) vals[k] = rd(k);
  }
}

// ---- modality LUT, VOI -------------------------------------------------------------------------

struct Lut {
  bool present = false;
  long long entries = 0, first = 0;
  int bits = 0;
  std::vector<double> data;
  double map(double v) const {
    double i = v - (double)first;
    if (!(i > 0)) i = 0;
    if (i > (double)(entries - 1)) i = (double)(entries - 1);
    return data[(size_t)i];
  }
};

Lut read_lut(DcmDataset *ds, const DcmTagKey &seq_tag, int pixrep, const char *what) {
  Lut lut;
  DcmSequenceOfItems *seq = nullptr;
  if (ds->findAndGetSequence(seq_tag, seq).bad() || !seq || seq->card() == 0) return lut;
  DcmItem *it = seq->getItem(0);
  Uint16 d0 = 0, d1 = 0, d2 = 0;
  if (!it || it->findAndGetUint16(DCM_LUTDescriptor, d0, 0).bad() || it->findAndGetUint16(DCM_LUTDescriptor, d1, 1).bad() ||
      it->findAndGetUint16(DCM_LUTDescriptor, d2, 2).bad())
    fail(PS_EFORMAT, "%s has no valid LUT Descriptor", what);
  lut.entries = d0 == 0 ? 65536 : d0;
  lut.first = pixrep == 1 ? (long long)(Sint16)d1 : (long long)d1;
  lut.bits = d2;
  if (lut.bits < 1 || lut.bits > 16) fail(PS_EFORMAT, "%s LUT Descriptor has %d bits", what, lut.bits);
  const Uint16 *arr = nullptr;
  unsigned long count = 0;
  if (it->findAndGetUint16Array(DCM_LUTData, arr, &count).bad() || !arr)
    fail(PS_EFORMAT, "%s has no LUT Data", what);
  if ((long long)count < lut.entries)
    fail(PS_EFORMAT, "%s LUT Data holds %lu entries, its descriptor says %lld", what, count, lut.entries);
  lut.data.assign(arr, arr + lut.entries);
  lut.present = true;
  return lut;
}

// numpy-style linear-interpolated percentile (q in [0, 1]) of a copy of v.
void percentile_window(const std::vector<double> &v, double &lo, double &hi) {
  std::vector<double> t(v);
  auto pct = [&](double q) {
    double pos = q * (double)(t.size() - 1);
    size_t i = (size_t)std::floor(pos);
    double frac = pos - (double)i;
    std::nth_element(t.begin(), t.begin() + i, t.end());
    double a = t[i];
    if (frac == 0 || i + 1 >= t.size()) return a;
    double b = *std::min_element(t.begin() + i + 1, t.end());
    return a + (b - a) * frac;
  };
  lo = pct(0.005);
  hi = pct(0.995);
}

// Same percentiles over integer stored values through a histogram (O(n), no copy). false when the
// values are not integers inside the BitsStored range (e.g. a JPEG 2000 frame of other precision).
bool percentile_hist(const std::vector<double> &v, int bits, int pixrep, double q_lo, double q_hi, double &lo,
                     double &hi) {
  if (bits > 16 || v.empty()) return false;
  const long long base = pixrep ? -(1LL << (bits - 1)) : 0, range = 1LL << bits;
  std::vector<uint64_t> hist((size_t)range, 0);
  for (double x : v) {
    long long k = (long long)x - base;
    if (k < 0 || k >= range || (double)((long long)x) != x) return false;
    hist[(size_t)k]++;
  }
  const size_t n = v.size();
  auto kth = [&](size_t want, size_t &bin, uint64_t &cum) {  // value of the want-th smallest (0-based)
    while (cum + hist[bin] <= want) cum += hist[bin++];
    return (double)((long long)bin + base);
  };
  auto pct = [&](double q) {
    double pos = q * (double)(n - 1);
    size_t i = (size_t)std::floor(pos);
    double frac = pos - (double)i;
    size_t bin = 0;
    uint64_t cum = 0;
    double a = kth(i, bin, cum);
    if (frac == 0 || i + 1 >= n) return a;
    double b = kth(i + 1, bin, cum);
    return a + (b - a) * frac;
  };
  lo = pct(q_lo);
  hi = pct(q_hi);
  return true;
}

// warn: nullptr refuses damaged pixel data; else its warnings are appended there.
int do_read(const char *path, const ps_read_opts *opts, ps_image **out, std::vector<std::string> *warn) {
  DcmFileFormat ff;
  load_file(path, opts, ff);
  DcmDataset *ds = ff.getDataset();
  // A transfer syntax DCMTK does not know (HTJ2K, JPEG XL, private ones) leaves the pixel data
  // unreadable: say so instead of a confusing pixel data error.
  OFString ts_uid;
  if (ff.getMetaInfo() && ff.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, ts_uid).good() && !ts_uid.empty()) {
    char ts[68];
    copy_str(ts, sizeof ts, ts_uid);
    if (DcmXfer(ts).getXfer() == EXS_Unknown) {
      bool htj2k = !strcmp(ts, "1.2.840.10008.1.2.4.201") || !strcmp(ts, "1.2.840.10008.1.2.4.202") ||
                   !strcmp(ts, "1.2.840.10008.1.2.4.203");
      fail(PS_EUNSUPPORTED, "%stransfer syntax %s not supported", htj2k ? "High-Throughput JPEG 2000 " : "unknown ", ts);
    }
  }
  Geometry g = check_geometry(ds, opts);
  std::vector<double> samples;  // stored values, then modality values in place
  std::string model;
  read_frame0(ds, g, samples, model, warn);

  ps_image *img = nullptr;
  int st = ps_image_create(g.cols, g.rows, &img);
  if (st != PS_OK) fail(st, "%s", ps_last_error());
  std::unique_ptr<ps_image, void (*)(ps_image *)> guard(img, ps_image_free);
  fill_meta(ff, &img->meta);
  img->meta.frames = g.frames;
  img->meta.window_center = 0;
  img->meta.window_width = 0;
  size_t npix = (size_t)g.rows * g.cols;
  float *o = img->data;
  bool raw = opts && opts->raw;

  if (g.spp == 3) {
    // Colour: luminance over the full stored range, no window.
    double full = (double)((1ULL << g.bits_stored) - 1);
    bool ybr = model == "YBR_FULL";
    for (size_t i = 0; i < npix; i++) {
      const double *s = &samples[i * 3];
      double y = ybr ? (double)s[0] : 0.299 * (double)s[0] + 0.587 * (double)s[1] + 0.114 * (double)s[2];
      o[i] = raw ? (float)y : (float)std::min(1.0, std::max(0.0, y / full));
    }
    img->is_raw = raw ? 1 : 0;
    *out = guard.release();
    return PS_OK;
  }

  // Modality LUT (sequence first, else rescale) and the VOI that will follow: LUT sequence, else
  // the first window, else the full 8-bit range, else a percentile window.
  Lut mlut = read_lut(ds, DCM_ModalityLUTSequence, g.pixrep, "Modality LUT Sequence");
  double slope = img->meta.rescale_slope, icpt = img->meta.rescale_intercept;
  Lut vlut = read_lut(ds, DCM_VOILUTSequence, 0, "VOI LUT Sequence");
  double wc = 0, ww = 0;
  bool have_window = get_f64(ds, DCM_WindowCenter, wc) && get_f64(ds, DCM_WindowWidth, ww) && ww >= 1;
  std::string func = trimmed(ds, DCM_VOILUTFunction);
  if (func.empty()) func = "LINEAR";
  if (have_window && func != "LINEAR" && func != "LINEAR_EXACT" && func != "SIGMOID")
    fail(PS_EUNSUPPORTED, "VOI LUT Function '%s' not supported", func.c_str());
  bool plain = !mlut.present && slope == 1.0 && icpt == 0.0;
  enum { V_LUT, V_WINDOW, V_FULL, V_PCT } kind;
  if (vlut.present) kind = V_LUT;
  else if (have_window) kind = V_WINDOW;
  else if (plain && g.bits_stored <= 8) kind = V_FULL;
  else kind = V_PCT;

  double lo = 0, hi = 0;
  bool pct_done = false;
  if (kind == V_PCT && !mlut.present) {
    // Percentiles of slope * s + intercept are slope * (percentiles of s) + intercept, the
    // quantiles swapping when the slope is negative.
    double a = 0, b = 0;
    bool neg = slope < 0;
    if (percentile_hist(samples, g.bits_stored, g.pixrep, neg ? 0.995 : 0.005, neg ? 0.005 : 0.995, a, b)) {
      lo = a * slope + icpt;
      hi = b * slope + icpt;
      pct_done = true;
    }
  }

  std::vector<double> &mv = samples;
  if (mlut.present) {
    for (size_t i = 0; i < npix; i++) mv[i] = mlut.map(mv[i]);
    img->meta.rescale_slope = 1;
    img->meta.rescale_intercept = 0;
  } else if (slope != 1.0 || icpt != 0.0) {
    for (size_t i = 0; i < npix; i++) mv[i] = mv[i] * slope + icpt;
  }

  if (kind == V_LUT) {
    img->meta.window_width = (double)vlut.entries;
    img->meta.window_center = (double)vlut.first + (double)vlut.entries / 2.0;
  } else if (kind == V_WINDOW) {
    img->meta.window_center = wc;
    img->meta.window_width = ww;
  } else if (kind == V_FULL) {
    lo = g.pixrep ? -(double)(1 << (g.bits_stored - 1)) : 0.0;
    hi = lo + (double)((1 << g.bits_stored) - 1);
    img->meta.window_center = (lo + hi) / 2;
    img->meta.window_width = hi - lo;
  } else {
    if (!pct_done) percentile_window(mv, lo, hi);
    img->meta.window_center = (lo + hi) / 2;
    img->meta.window_width = hi - lo;
  }

  if (raw) {
    for (size_t i = 0; i < npix; i++) o[i] = (float)mv[i];
    img->is_raw = 1;
    *out = guard.release();
    return PS_OK;
  }

  const bool invert = g.photometric == "MONOCHROME1";
  const bool sigmoid = func == "SIGMOID";
  const double lut_full = (double)((1 << vlut.bits) - 1);
  double c = wc, w = ww;
  if (func == "LINEAR") c -= 0.5, w -= 1;  // PS3.3 C.11.2.1.2.1
  const double below = c - w / 2, above = c + w / 2, span = hi > lo ? hi - lo : 0.0;
  for (size_t i = 0; i < npix; i++) {
    double x = mv[i], y;
    switch (kind) {
      case V_LUT: y = vlut.map(x) / lut_full; break;
      case V_WINDOW:
        if (sigmoid) y = 1.0 / (1.0 + std::exp(-4.0 * (x - wc) / ww));
        else if (x <= below) y = 0;
        else if (x > above) y = 1;
        else y = (x - c) / w + 0.5;
        break;
      default: y = span > 0 ? (x - lo) / span : 0.0; break;
    }
    y = std::min(1.0, std::max(0.0, y));
    o[i] = (float)(invert ? 1.0 - y : y);
  }
  img->is_raw = 0;
  *out = guard.release();
  return PS_OK;
}

}  // namespace

extern "C" {

int ps_dicom_read(const char *path, const ps_read_opts *opts, ps_image **out) {
  if (!out) return ps_error(PS_EINVAL, "dicom: NULL out pointer");
  *out = nullptr;
  PS_PROTECT(path, return do_read(path, opts, out, nullptr);)
}

int ps_dicom_read_warnings(const char *path, const ps_read_opts *opts, ps_image **out, char ***warnings,
                           int *nwarnings) {
  if (warnings) *warnings = nullptr;
  if (nwarnings) *nwarnings = 0;
  if (!out) return ps_error(PS_EINVAL, "dicom: NULL out pointer");
  *out = nullptr;
  if (!warnings || !nwarnings) return ps_error(PS_EINVAL, "dicom: NULL warnings pointer");
  PS_PROTECT(path, {
    std::vector<std::string> w;
    int st = do_read(path, opts, out, &w);
    if (st != PS_OK || w.empty()) return st;
    // plain malloc'd C strings: ps_image_warnings_free releases them
    char **list = static_cast<char **>(calloc(w.size(), sizeof(char *)));
    bool ok = list != nullptr;
    for (size_t i = 0; ok && i < w.size(); i++) {
      std::string t = "dicom: " + w[i];
      ok = (list[i] = strdup(t.c_str())) != nullptr;
    }
    if (!ok) {
      if (list)
        for (size_t i = 0; i < w.size(); i++) free(list[i]);
      free(list);
      ps_image_free(*out);
      *out = nullptr;
      return ps_error(PS_ENOMEM, "dicom: %s: out of memory", path);
    }
    *warnings = list;
    *nwarnings = (int)w.size();
    return PS_OK;
  })
}

int ps_dicom_read_meta(const char *path, const ps_read_opts *opts, ps_film_meta *meta) {
  if (!meta) return ps_error(PS_EINVAL, "dicom: NULL meta pointer");
  memset(meta, 0, sizeof *meta);
  PS_PROTECT(path, {
    DcmFileFormat ff;
    load_file(path, opts, ff);
    fill_meta(ff, meta);
    return PS_OK;
  })
}

int ps_dicom_probe(const char *path) {
  if (!path) return 0;
  try {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char head[132];
    size_t got = fread(head, 1, sizeof head, f);
    long long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    fclose(f);
    return probe_bytes(head, got, size);
  } catch (...) {
    return 0;
  }
}

int ps_dicom_have_jpeg2000(void) {
#ifdef PS_HAVE_OPENJPEG
  return 1;
#else
  return 0;
#endif
}

}  // extern "C"
