#!/usr/bin/python3
"""Malformed-film catalogue and fuzz seeds, made from the real films in sample_data/films
(copies of ../shared/data; credits in sample_data/SOURCES.md). Nothing here is drawn by hand:
every file is a real film truncated, re-encoded smaller, or with one header field changed.

  make_catalogue.py OUT_DIR          catalogue for tests/test_malformed.c: OUT_DIR/<case files>
                                     plus OUT_DIR/catalogue.tsv (name, allowed statuses, what,
                                     reference verdict)
  make_catalogue.py --references OUT_DIR
                                     what Pillow / pydicom make of each catalogue file that has a
                                     reference verdict: one line "name<TAB>verdict<TAB>read|refused:
                                     why" (run on a catalogue made before)
  make_catalogue.py --seeds OUT_DIR  small inputs for tests/fuzz (OUT_DIR/{image,dicom,
                                     safetensors,csv}/): valid ones, plus damaged ones that reach the
                                     decoders' warning paths (corrupt JPEG scan, PNG CRC, short
                                     DICOM pixel data)

Allowed statuses are ps_common.h names without PS_ (OK, EFORMAT, ELIMIT, EUNSUPPORTED, EIO,
ENOTFOUND); a case lists every status that is a correct answer (e.g. a truncated JPEG may be
refused, never crash). The reference verdict, where there is one, says what a program we did not
write does with the file: "pillow-refuses" (Image.open(f).load() raises), "pydicom-refuses"
(dcmread(f).pixel_array raises); tests/test_malformed.c checks it. Files from broken modalities:
only Debian's python3 (pydicom 2.3, Pillow 9.4, numpy) is used.
"""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
import pydicom
from PIL import Image, ImageCms
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
FILMS = os.path.join(SRC, "sample_data", "films")
PNG = os.path.join(FILMS, "png", "nih_00000001_000.png")
DCM_IMPLICIT = os.path.join(FILMS, "dicom", "gcp_dicom_00000001_000.dcm")
DCM_JPEG = os.path.join(FILMS, "dicom", "siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm")
DCM_ACRNEMA = os.path.join(FILMS, "dicom", "CR-MONO1-10-chest.dcm")


def kaggle(kind):
    d = os.path.join(FILMS, "kaggle", kind)
    return os.path.join(d, sorted(os.listdir(d))[0])


def read(p):
    with open(p, "rb") as f:
        return f.read()


def png_chunk(typ, data):
    return struct.pack(">I", len(data)) + typ + data + struct.pack(">I", zlib.crc32(typ + data) & 0xFFFFFFFF)


def png_set_ihdr(png, width=None, height=None, depth=None, ctype=None):
    """Rewrite IHDR fields with a correct CRC (a 'valid' file that lies about itself)."""
    assert png[12:16] == b"IHDR"
    w, h, d, c, comp, filt, inter = struct.unpack(">IIBBBBB", png[16:29])
    w = w if width is None else width
    h = h if height is None else height
    d = d if depth is None else depth
    c = c if ctype is None else ctype
    ihdr = struct.pack(">IIBBBBB", w, h, d, c, comp, filt, inter)
    return png[:8] + png_chunk(b"IHDR", ihdr) + png[33:]


def png_bomb(width, height):
    """Gray 8-bit PNG of zeros: a few hundred KB that inflate to width*height bytes."""
    co = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    parts = [co.compress(row) for _ in range(height)]
    parts.append(co.flush())
    idat = b"".join(parts)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_sof_offset(j):
    i = 2
    while i + 4 <= len(j):
        if j[i] != 0xFF:
            i += 1
            continue
        m = j[i + 1]
        if m in (0xC0, 0xC1, 0xC2):
            return i
        if m == 0xD8 or 0xD0 <= m <= 0xD7 or m == 0x01 or m == 0xFF:
            i += 2 if m != 0xFF else 1
            continue
        (ln,) = struct.unpack(">H", j[i + 2:i + 4])
        i += 2 + ln
    raise ValueError("no SOF")


def jpeg_set_dims(j, width, height):
    o = jpeg_sof_offset(j)
    b = bytearray(j)
    b[o + 5:o + 7] = struct.pack(">H", height)
    b[o + 7:o + 9] = struct.pack(">H", width)
    return bytes(b)


def jpeg_scan_range(j):
    """(start, end) of the entropy-coded data of the first scan: after the SOS segment, up to the EOI."""
    i = 2
    while i + 4 <= len(j):
        if j[i] != 0xFF:
            raise ValueError("no marker at %d" % i)
        m = j[i + 1]
        if m == 0xFF:
            i += 1
            continue
        (ln,) = struct.unpack(">H", j[i + 2:i + 4])
        if m == 0xDA:
            assert j[-2:] == b"\xff\xd9"
            return i + 2 + ln, len(j) - 2
        i += 2 + ln
    raise ValueError("no SOS")


def jpeg_scan_noise(j, n=None, seed=0):
    """n bytes (None: a third of the scan) from the middle of the scan on replaced by noise without
    0xFF (no marker appears), the length unchanged: the damaged entropy-coded data of a bad disk
    sector or transfer. libjpeg warns and patches."""
    a, b = jpeg_scan_range(j)
    mid = (a + b) // 2
    n = min((b - a) // 3 if n is None else n, b - mid)
    noise = np.random.RandomState(seed).randint(0, 255, n).astype(np.uint8).tobytes()
    return j[:mid] + noise + j[mid + n:]


def png_chunks(png):
    """[(type, data, crc bytes)] of a PNG."""
    out, i = [], 8
    while i + 8 <= len(png):
        (n,) = struct.unpack(">I", png[i:i + 4])
        out.append((png[i + 4:i + 8], png[i + 8:i + 8 + n], png[i + 8 + n:i + 12 + n]))
        i += 12 + n
    return out


def png_join(chunks):
    return b"\x89PNG\r\n\x1a\n" + b"".join(struct.pack(">I", len(d)) + t + d + c for t, d, c in chunks)


def png_break_crc(png, typ):
    """The first typ chunk's CRC off by one bit, its data intact."""
    ch = png_chunks(png)
    k = next(i for i, c in enumerate(ch) if c[0] == typ)
    t, d, c = ch[k]
    ch[k] = (t, d, c[:3] + bytes([c[3] ^ 1]))
    return png_join(ch)


def png_extra_data(png):
    """The image data recompressed with 5000 bytes more than the rows need ("Too much image data",
    a libpng benign error): one IDAT, valid CRCs."""
    ch = png_chunks(png)
    raw = zlib.decompress(b"".join(d for t, d, c in ch if t == b"IDAT"))
    z = zlib.compress(raw + b"\x00" * 5000)
    rest = [c for c in ch if c[0] != b"IDAT"]
    k = next(i for i, c in enumerate(rest) if c[0] in (b"tEXt", b"IEND"))
    rest.insert(k, (b"IDAT", z, struct.pack(">I", zlib.crc32(b"IDAT" + z) & 0xFFFFFFFF)))
    return png_join(rest)


def dcm_jpeg_scan_noise(raw, n=None, seed=0):
    """A JPEG Baseline DICOM file with n bytes of its (single) fragment's scan replaced by noise
    without 0xFF, in place: every DICOM length stays right, only the JPEG data is damaged."""
    soi = raw.find(b"\xff\xd8\xff", pixel_data_offset(raw))
    eoi = raw.rfind(b"\xff\xd9")
    frag = raw[soi:eoi + 2]
    return raw[:soi] + jpeg_scan_noise(frag, n, seed) + raw[eoi + 2:]


def dcm_bytes(ds, **kw):
    bio = io.BytesIO()
    ds.save_as(bio, **kw)
    return bio.getvalue()


def small_native(path, size=64):
    """The film's header with its first frame downscaled (Pillow bilinear) to size x size, native."""
    ds = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        ds.file_meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    arr = ds.pixel_array
    if arr.ndim == 3 and getattr(ds, "SamplesPerPixel", 1) == 1:
        arr = arr[0]
    bits = int(ds.BitsAllocated)
    img = Image.fromarray(arr.astype(np.uint8 if bits == 8 else np.int32))
    small = np.asarray(img.resize((size, size), Image.BILINEAR))
    small = small.astype(np.uint8 if bits == 8 else np.uint16)
    ds.Rows, ds.Columns = size, size
    ds.PixelData = small.tobytes()
    if ds.file_meta is not None and "TransferSyntaxUID" in ds.file_meta:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.is_implicit_VR, ds.is_little_endian = False, True
    return ds


def pixel_data_offset(raw):
    """Byte offset of the (7FE0,0010) tag in a little-endian file, and the value length field offset."""
    i = raw.rfind(b"\xe0\x7f\x10\x00")
    if i < 0:
        raise ValueError("no pixel data")
    return i


# ---- catalogue --------------------------------------------------------------------------------

def catalogue(out):
    os.makedirs(out, exist_ok=True)
    rows = []

    def put(name, data, allowed, what, ref=""):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        rows.append((name, allowed, what, ref))

    png = read(PNG)
    jpg = read(kaggle("NORMAL"))
    jpg_p = read(kaggle("PNEUMONIA"))

    # PNG
    put("png_zero.png", b"", "EFORMAT", "0-byte file")
    put("png_sig_only.png", png[:8], "EFORMAT", "PNG signature and nothing else")
    put("png_trunc_ihdr.png", png[:20], "EFORMAT", "cut inside IHDR")
    put("png_trunc_half.png", png[:len(png) // 2], "EFORMAT", "cut in the middle of IDAT")
    put("png_trunc_noiend.png", png[:-12], "OK,EFORMAT", "IEND chunk missing (all pixels present)")
    put("png_bad_magic.png", b"\x89PNX" + png[4:], "EFORMAT", "PNG with a damaged signature")
    b = bytearray(png)
    b[len(png) // 2] ^= 0xFF
    put("png_bad_crc.png", bytes(b), "EFORMAT", "one IDAT byte flipped (CRC and zlib fail)")
    put("png_width0.png", png_set_ihdr(png, width=0), "EFORMAT", "IHDR width 0 (valid CRC)")
    put("png_height0.png", png_set_ihdr(png, height=0), "EFORMAT", "IHDR height 0 (valid CRC)")
    put("png_huge_dims.png", png_set_ihdr(png, width=1000000, height=1000000), "ELIMIT,EFORMAT",
        "IHDR claims 10^12 pixels")
    put("png_dims_lie.png", png_set_ihdr(png, width=4096, height=4096), "EFORMAT",
        "IHDR claims 4096x4096, IDAT holds 512x512")
    put("png_bad_depth.png", png_set_ihdr(png, depth=7), "EFORMAT", "bit depth 7")
    put("png_bad_ctype.png", png_set_ihdr(png, ctype=5), "EFORMAT", "colour type 5")
    put("png_bomb.png", png_bomb(12000, 12000), "ELIMIT",
        "decompression bomb: 140 KB inflating to 144 megapixels (over the 100 MP limit)")
    put("png_named.jpeg", png, "OK", "a real PNG named .jpeg (content decides)")
    # damaged data libpng could get past: a CRC error in any chunk, a benign error on the pixels
    put("png_ancillary_crc.png", png_break_crc(png, b"gAMA"), "EFORMAT",
        "gAMA CRC off by one bit (libpng warns and drops the chunk; the file was damaged)", "pillow-refuses")
    put("png_text_crc.png", png_break_crc(png, b"tEXt"), "EFORMAT",
        "tEXt after the image data with a broken CRC (Pillow does not check it)")
    put("png_idat_crc.png", png_break_crc(png, b"IDAT"), "EFORMAT",
        "first IDAT CRC off by one bit, its data intact (Pillow does not check it)")
    put("png_extra_data.png", png_extra_data(png), "EFORMAT",
        "image data followed by 5000 bytes more (libpng benign error 'Too much image data')")
    bio = io.BytesIO()
    Image.open(PNG).save(bio, "PNG", icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    put("png_gray_rgb_icc.png", bio.getvalue(), "OK",
        "gray film carrying an RGB ICC profile (libpng complains about the metadata; pixels are fine: control)")

    # JPEG
    put("jpeg_zero.jpeg", b"", "EFORMAT", "0-byte file")
    put("jpeg_soi_only.jpeg", jpg[:3], "EFORMAT", "SOI marker only")
    put("jpeg_trunc_header.jpeg", jpg[:200], "EFORMAT", "cut inside the header segments")
    put("jpeg_trunc_half.jpeg", jpg[:len(jpg) // 2], "EFORMAT",
        "cut in the middle of the scan (libjpeg would pad it with gray)")
    put("jpeg_bad_magic.jpeg", b"\xff\xd9" + jpg[2:], "EFORMAT", "EOI where SOI should be")
    put("jpeg_huge_dims.jpeg", jpeg_set_dims(jpg, 65000, 65000), "ELIMIT,EFORMAT",
        "SOF claims 65000x65000 (4.2 gigapixels)")
    put("jpeg_zero_dims.jpeg", jpeg_set_dims(jpg, 0, 0), "EFORMAT", "SOF width and height 0")
    put("jpeg_named.png", jpg_p, "OK", "a real JPEG named .png")
    b = bytearray(jpg)
    o = jpeg_sof_offset(jpg)
    b[o + 9] = 0  # number of components 0
    put("jpeg_ncomp0.jpeg", bytes(b), "EFORMAT", "SOF with 0 components")
    # damaged entropy-coded data: libjpeg-turbo warns ("Corrupt JPEG data: ...") and patches the
    # scan with guesses; Pillow ignores those warnings and refuses only a stray marker
    put("jpeg_scan_noise.jpeg", jpeg_scan_noise(jpg, 256), "EFORMAT",
        "256 bytes of noise (no 0xFF) in the middle of the scan (Pillow reads it)")
    a, e = jpeg_scan_range(jpg)
    mid = (a + e) // 2
    put("jpeg_scan_zeros.jpeg", jpg[:mid] + b"\x00" * 64 + jpg[mid + 64:], "EFORMAT",
        "64 zero bytes in the middle of the scan (Pillow reads it)")
    put("jpeg_scan_cut_eoi.jpeg", jpg[:mid] + b"\xff\xd9", "EFORMAT",
        "scan cut in the middle, EOI appended: premature end of data segment (Pillow reads it)")
    put("jpeg_extraneous.jpeg", jpg[:-2] + b"\x00" * 10 + b"\xff\xd9", "EFORMAT",
        "10 extraneous bytes before the EOI marker (Pillow reads it)")
    put("jpeg_scan_marker.jpeg", jpg[:mid] + b"\xff\xc7" + jpg[mid + 2:], "EFORMAT",
        "a stray SOF7 marker in the middle of the scan", "pillow-refuses")

    # DICOM (real files; ACR-NEMA included)
    dcm = read(DCM_IMPLICIT)
    put("dcm_zero.dcm", b"", "EFORMAT", "0-byte file")
    put("dcm_preamble_only.dcm", dcm[:132], "EFORMAT", "preamble + DICM and nothing else")
    put("dcm_trunc_meta.dcm", dcm[:200], "EFORMAT", "cut inside the meta header")
    pix = pixel_data_offset(dcm)
    put("dcm_no_pixels_cut.dcm", dcm[:pix], "EFORMAT", "cut just before the pixel data element")
    put("dcm_trunc_pixels.dcm", dcm[:pix + 8 + (len(dcm) - pix - 8) // 2], "EFORMAT",
        "pixel data cut in half (the element length says more)")
    put("dcm_bad_magic.dcm", dcm[:128] + b"DICX" + dcm[132:], "EFORMAT",
        "preamble with DICX instead of DICM")
    # lying pixel-data length: implicit VR: tag(4) + u32 length
    b = bytearray(dcm)
    b[pix + 4:pix + 8] = struct.pack("<I", 0x7FFFFFF0)
    put("dcm_len_lie.dcm", bytes(b), "EFORMAT", "pixel data element length 2 GB in a 1 MB file")
    b = bytearray(dcm)
    b[pix + 4:pix + 8] = struct.pack("<I", 0xFFFFFFFF)
    put("dcm_len_undefined.dcm", bytes(b), "EFORMAT,EUNSUPPORTED",
        "native pixel data with undefined length (encapsulated marker, no fragments)")
    acr = read(DCM_ACRNEMA)
    put("dcm_acr_trunc.dcm", acr[:len(acr) // 3], "EFORMAT", "ACR-NEMA file (no preamble) cut at a third")

    def edit(src, fn, **save):
        ds = pydicom.dcmread(src)
        fn(ds)
        return dcm_bytes(ds, **save)

    small = small_native(DCM_IMPLICIT)
    smallbytes = dcm_bytes(small)
    put("dcm_small_ok.dcm", smallbytes, "OK", "the NIH film downscaled to 64x64 (control)")

    def ed(name, fn, allowed, what, ref=""):
        ds = pydicom.dcmread(io.BytesIO(smallbytes))
        fn(ds)
        put(name, dcm_bytes(ds), allowed, what, ref)

    ed("dcm_no_pixel_data.dcm", lambda d: d.__delitem__("PixelData"), "EFORMAT", "no (7FE0,0010) element")
    ed("dcm_short_pixels.dcm", lambda d: setattr(d, "PixelData", d.PixelData[:1000]), "EFORMAT",
       "pixel data 1000 bytes for 64x64 (consistent element length)", "pydicom-refuses")
    ed("dcm_short_2bytes.dcm", lambda d: setattr(d, "PixelData", d.PixelData[:-2]), "EFORMAT",
       "pixel data 2 bytes short of 64x64 (consistent element length)", "pydicom-refuses")
    ed("dcm_short_frames.dcm", lambda d: setattr(d, "NumberOfFrames", 3), "EFORMAT",
       "NumberOfFrames 3 over the pixel data of one frame (frame 0 is whole)", "pydicom-refuses")
    ed("dcm_empty_pixels.dcm", lambda d: setattr(d, "PixelData", b""), "EFORMAT", "pixel data of length 0")
    ed("dcm_rows0.dcm", lambda d: setattr(d, "Rows", 0), "EFORMAT", "Rows 0")
    ed("dcm_cols0.dcm", lambda d: setattr(d, "Columns", 0), "EFORMAT", "Columns 0")
    ed("dcm_no_rows.dcm", lambda d: d.__delitem__("Rows"), "EFORMAT", "Rows missing")
    ed("dcm_huge_dims.dcm", lambda d: (setattr(d, "Rows", 65535), setattr(d, "Columns", 65535)),
       "ELIMIT,EFORMAT", "Rows/Columns 65535 (4.3 gigapixels) over 8 KB of pixels")
    ed("dcm_huge_frames.dcm", lambda d: setattr(d, "NumberOfFrames", 2000000000), "ELIMIT,EFORMAT",
       "NumberOfFrames 2e9")
    ed("dcm_frames0.dcm", lambda d: setattr(d, "NumberOfFrames", 0), "OK,EFORMAT",
       "NumberOfFrames 0 (a broken modality; one frame is present)")
    ed("dcm_palette.dcm", lambda d: setattr(d, "PhotometricInterpretation", "PALETTE COLOR"),
       "EUNSUPPORTED,EFORMAT", "PALETTE COLOR (refused by design)")
    ed("dcm_photometric_bogus.dcm", lambda d: setattr(d, "PhotometricInterpretation", "HSV"),
       "EUNSUPPORTED,EFORMAT", "retired/unknown photometric interpretation HSV")
    ed("dcm_ybr_1spp.dcm", lambda d: setattr(d, "PhotometricInterpretation", "YBR_FULL"),
       "EUNSUPPORTED,EFORMAT", "YBR_FULL with SamplesPerPixel 1 (contradiction)")
    ed("dcm_spp3_short.dcm", lambda d: setattr(d, "SamplesPerPixel", 3), "EFORMAT,EUNSUPPORTED",
       "SamplesPerPixel 3 with 1-sample pixel data")
    ed("dcm_spp0.dcm", lambda d: setattr(d, "SamplesPerPixel", 0), "EFORMAT,EUNSUPPORTED", "SamplesPerPixel 0")
    ed("dcm_bits_alloc0.dcm", lambda d: setattr(d, "BitsAllocated", 0), "EFORMAT,EUNSUPPORTED", "BitsAllocated 0")
    ed("dcm_bits_alloc7.dcm", lambda d: setattr(d, "BitsAllocated", 7), "EFORMAT,EUNSUPPORTED", "BitsAllocated 7")
    ed("dcm_bits_alloc64.dcm", lambda d: setattr(d, "BitsAllocated", 64), "EFORMAT,EUNSUPPORTED",
       "BitsAllocated 64")
    ed("dcm_bits_stored_gt_alloc.dcm", lambda d: (setattr(d, "BitsStored", 16), setattr(d, "HighBit", 15)),
       "OK,EFORMAT,EUNSUPPORTED", "BitsStored 16 > BitsAllocated 8")
    ed("dcm_highbit_lie.dcm", lambda d: setattr(d, "HighBit", 31), "OK,EFORMAT,EUNSUPPORTED", "HighBit 31 for 8 bits")
    ed("dcm_window0.dcm", lambda d: (setattr(d, "WindowCenter", 100), setattr(d, "WindowWidth", 0)),
       "OK,EFORMAT", "WindowWidth 0 (invalid per C.11.2.1.2; must not divide by zero)")
    ed("dcm_slope0.dcm", lambda d: (setattr(d, "RescaleSlope", 0), setattr(d, "RescaleIntercept", 5)),
       "OK,EFORMAT", "RescaleSlope 0 (a constant film)")
    ed("dcm_slope_nan.dcm", lambda d: (setattr(d, "RescaleSlope", "NaN"), setattr(d, "RescaleIntercept", 0)),
       "OK,EFORMAT", "RescaleSlope NaN")

    def bad_ts(d):
        d.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 MP@ML
        d.PixelData = encapsulate([d.PixelData[:4096]])
        d["PixelData"].is_undefined_length = True
        d.is_implicit_VR, d.is_little_endian = False, True
    ds = pydicom.dcmread(io.BytesIO(smallbytes))
    bad_ts(ds)
    put("dcm_mpeg2.dcm", dcm_bytes(ds), "EUNSUPPORTED", "MPEG2 transfer syntax (video)")
    ds = pydicom.dcmread(io.BytesIO(smallbytes))
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7"
    put("dcm_ts_unknown.dcm", dcm_bytes(ds), "EUNSUPPORTED,EFORMAT", "unknown transfer syntax UID 1.2.3.4.5.6.7")
    # JPEG baseline DICOM with its only fragment cut or garbage
    ds = pydicom.dcmread(DCM_JPEG)
    frag = next(pydicom.encaps.generate_pixel_data_frame(ds.PixelData))
    ds.PixelData = encapsulate([frag[:len(frag) // 8]])
    put("dcm_jpeg_frag_cut.dcm", dcm_bytes(ds), "EFORMAT",
        "JPEG Baseline film whose fragment is cut to an eighth (libjpeg would pad it)")
    put("dcm_jpeg_scan_noise.dcm", dcm_jpeg_scan_noise(read(DCM_JPEG), 256), "EFORMAT",
        "JPEG Baseline film with 256 bytes of noise in its scan (DCMTK's decoder only logs libjpeg's "
        "warnings; pydicom reads it)")
    ds = pydicom.dcmread(DCM_JPEG)
    ds.PixelData = encapsulate([b"\x00" * 4096])
    put("dcm_jpeg_frag_garbage.dcm", dcm_bytes(ds), "EFORMAT", "JPEG Baseline film whose fragment is zeros")
    ds = pydicom.dcmread(DCM_JPEG)
    ds.PixelData = encapsulate([jpeg_set_dims(frag, 4000, 4000)])
    put("dcm_jpeg_dims_mismatch.dcm", dcm_bytes(ds), "EFORMAT,OK",
        "JPEG fragment 4000x4000 inside a header that says otherwise")
    # Photometric flipped on a JPEG is the kind of file torchxrayvision carries: must read.
    put("dcm_mono1_control.dcm", read(os.path.join(FILMS, "dicom", "CR-MONO1-10-chest.dcm")), "OK",
        "ACR-NEMA MONOCHROME1 film (control)")

    # Not a film at all
    put("text.dcm", b"PatientName,Doe^John\n" * 20, "EFORMAT", "a CSV renamed .dcm")
    put("random.png", np.random.RandomState(0).bytes(4096), "EFORMAT", "4 KB of noise named .png")
    put("pdf_report.jpeg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "EFORMAT",
        "a PDF report named .jpeg")

    with open(os.path.join(out, "catalogue.tsv"), "w") as f:
        f.write("# name\tallowed statuses\twhat\treference verdict (made by tests/malformed/make_catalogue.py)\n")
        for r in rows:
            f.write("\t".join(r) + "\n")
    print("%d catalogue files in %s" % (len(rows), out))


def references(out):
    """What Pillow / pydicom do with each catalogue file that has a reference verdict."""
    import warnings
    warnings.simplefilter("ignore")
    with open(os.path.join(out, "catalogue.tsv")) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if not line.startswith("#")]
    for r in rows:
        if len(r) < 4 or not r[3]:
            continue
        path = os.path.join(out, r[0])
        try:
            if r[3].startswith("pillow"):
                with Image.open(path) as im:
                    im.load()
            else:
                pydicom.dcmread(path).pixel_array
            got = "read"
        except Exception as e:  # noqa: BLE001 - any refusal counts, its text is reported
            got = "refused: %s: %s" % (type(e).__name__, " ".join(str(e).split()))
        print("%s\t%s\t%s" % (r[0], r[3], got))


# ---- fuzz seeds -------------------------------------------------------------------------------

def seeds(out):
    d = {k: os.path.join(out, k) for k in ("image", "dicom", "safetensors", "csv")}
    for p in d.values():
        os.makedirs(p, exist_ok=True)

    def save_pil(im, name, **kw):
        im.save(os.path.join(d["image"], name), **kw)

    # image: small variants of the NIH PNG and Kermany JPEGs
    g = Image.open(PNG).convert("L").resize((48, 48), Image.BILINEAR)
    save_pil(g, "gray8.png")
    save_pil(g.convert("RGB"), "rgb.png")
    save_pil(g.convert("P"), "palette.png")
    save_pil(g.convert("LA"), "gray_alpha.png")
    save_pil(g.point(lambda v: 255 if v > 128 else 0).convert("1"), "bilevel.png")
    save_pil(Image.fromarray((np.asarray(g).astype(np.uint16) * 257)), "gray16.png")
    j = Image.open(kaggle("NORMAL")).convert("L").resize((48, 40), Image.BILINEAR)
    save_pil(j, "gray.jpeg", quality=80)
    save_pil(j, "progressive.jpeg", quality=80, progressive=True)
    save_pil(Image.open(kaggle("PNEUMONIA")).convert("RGB").resize((40, 48)), "rgb.jpeg", quality=75)
    save_pil(j.convert("RGB"), "rgb420.jpeg", quality=60, subsampling=2)
    save_pil(j.convert("CMYK"), "cmyk.jpeg", quality=70)
    # damaged ones: the decoders' warning paths (corrupt scan, CRC, benign error)
    bio = io.BytesIO()
    j.save(bio, "JPEG", quality=80)
    with open(os.path.join(d["image"], "scan_noise.jpeg"), "wb") as f:
        f.write(jpeg_scan_noise(bio.getvalue()))
    bio = io.BytesIO()
    g.save(bio, "PNG")
    small_png = bio.getvalue()
    ihdr_end = 8 + 12 + 13
    gama = png_chunk(b"gAMA", struct.pack(">I", 45455))
    with_gama = small_png[:ihdr_end] + gama + small_png[ihdr_end:]
    with open(os.path.join(d["image"], "ancillary_crc.png"), "wb") as f:
        f.write(png_break_crc(with_gama, b"gAMA"))
    with open(os.path.join(d["image"], "extra_data.png"), "wb") as f:
        f.write(png_extra_data(small_png))

    # dicom: every real film's header with 32x32 pixels, plus a small JPEG Baseline one
    for i, src in enumerate(sorted(os.listdir(os.path.join(FILMS, "dicom")))):
        p = os.path.join(FILMS, "dicom", src)
        try:
            ds = small_native(p, 32)
            ds.save_as(os.path.join(d["dicom"], "small_%d.dcm" % i), write_like_original=True)
        except Exception as e:  # noqa: BLE001 - a seed we cannot make is just skipped
            print("seed %s: %s" % (src, e), file=sys.stderr)
    ds = pydicom.dcmread(DCM_JPEG)
    bio = io.BytesIO()
    Image.open(io.BytesIO(next(pydicom.encaps.generate_pixel_data_frame(ds.PixelData)))).convert("L") \
        .resize((32, 32)).save(bio, "JPEG", quality=80)
    ds.Rows, ds.Columns = 32, 32
    ds.PixelData = encapsulate([bio.getvalue()])
    ds.save_as(os.path.join(d["dicom"], "small_jpeg_baseline.dcm"))
    with open(os.path.join(d["dicom"], "small_jpeg_baseline.dcm"), "rb") as f:
        jraw = f.read()
    with open(os.path.join(d["dicom"], "small_jpeg_scan_noise.dcm"), "wb") as f:
        f.write(dcm_jpeg_scan_noise(jraw))
    ds = small_native(DCM_IMPLICIT, 32)
    ds.NumberOfFrames = 2  # pixel data of one frame
    ds.save_as(os.path.join(d["dicom"], "small_short_frames.dcm"))
    ds = small_native(DCM_IMPLICIT, 32)
    ds.PixelData = ds.PixelData[:500]
    ds.save_as(os.path.join(d["dicom"], "small_short_pixels.dcm"))
    ds = small_native(DCM_IMPLICIT, 32)
    ds.WindowCenter, ds.WindowWidth, ds.RescaleSlope, ds.RescaleIntercept = 120, 200, 1, -10
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.is_implicit_VR = True
    ds.save_as(os.path.join(d["dicom"], "small_window_mono1.dcm"))

    # safetensors: tiny files in the format ps_model_save writes (F32/F16/BF16/I64 + metadata)
    def st(name, tensors, meta):
        header = {"__metadata__": meta} if meta is not None else {}
        body, off = b"", 0
        for tn, (dt, shape, raw) in tensors.items():
            header[tn] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
            body += raw
            off += len(raw)
        h = json.dumps(header).encode()
        h += b" " * ((8 - len(h) % 8) % 8)
        with open(os.path.join(d["safetensors"], name), "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + body)
    w = np.linspace(-1, 1, 6, dtype=np.float32)
    meta = {"task": "binary", "classes": "NORMAL,PNEUMONIA", "input_size": "224",
            "mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225", "threshold": "0.5",
            "provenance": "{\"data\": \"seed\"}"}
    st("fc_f32.safetensors", {"fc.weight": ("F32", [2, 3], w.tobytes()), "fc.bias": ("F32", [2], w[:2].tobytes()),
                              "bn1.num_batches_tracked": ("I64", [], struct.pack("<q", 7))}, meta)
    st("f16_bf16.safetensors", {"a": ("F16", [3], w[:3].astype(np.float16).tobytes()),
                                "b": ("BF16", [2, 1], (w[:2].view(np.uint32) >> 16).astype(np.uint16).tobytes()),
                                "empty": ("F32", [0, 4], b"")}, None)
    st("multiclass.safetensors", {"fc.weight": ("F32", [3, 2], w.tobytes())},
       dict(meta, task="multiclass", classes="NORMAL,BACTERIA,VIRUS"))
    st("escapes.safetensors", {"x\\u00e9\\\"q": ("U8", [4], b"\x01\x02\x03\x04")}, {"k": "tab\tnl\n\u00e9"})

    # csv: the Kaggle manifest (first rows) and labels CSVs in the shapes ps_dataset_scan reads
    with open(os.path.join(FILMS, "kaggle", "manifest.csv")) as f:
        lines = f.read().splitlines()
    with open(os.path.join(d["csv"], "kaggle_manifest.csv"), "w") as f:
        f.write("\n".join(lines[:6]) + "\n")
    with open(os.path.join(d["csv"], "manifest.csv"), "w") as f:
        f.write("path,label,subtype,patient_id,split,sha256\n"
                "/data/NORMAL/IM-0117-0001.jpeg,NORMAL,NORMAL,IM-0117,train,%s\n"
                "\"/data/PNEUMONIA/person1_bacteria_1.jpeg\",PNEUMONIA,BACTERIA,person1,val,\n"
                "rel/x.dcm,PNEUMONIA,VIRUS,\"p,\"\"q\"\"\",test,\n" % ("ab" * 32))
    with open(os.path.join(d["csv"], "labels.csv"), "w") as f:
        f.write("file,label,subtype,patient_id\r\na.png,NORMAL,,p1\r\nb.jpeg,PNEUMONIA,VIRUS,p2\r\n"
                "person1_bacteria_1.jpeg,pneumonia,,\r\n")
    with open(os.path.join(d["csv"], "labels_uid.csv"), "w") as f:
        f.write("SOPInstanceUID,class\n1.2.3,NORMAL\nx.dcm,PNEUMONIA\n")
    print("seeds in %s" % out)


def main(argv):
    if len(argv) == 3 and argv[1] == "--seeds":
        seeds(argv[2])
    elif len(argv) == 3 and argv[1] == "--references":
        references(argv[2])
    elif len(argv) == 2:
        catalogue(argv[1])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
