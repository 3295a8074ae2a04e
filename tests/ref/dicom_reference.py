#!/usr/bin/python3
"""Reference for tests/test_dicom.c, computed with pydicom (2.3) and its pixel handlers
(numpy, RLE, Pillow for JPEG Baseline and JPEG 2000), not with PneumoScope code.

  dicom_reference.py pixels IN.dcm OUT.npy [IN.dcm OUT.npy ...]
      display-ready float32 (H, W) in [0, 1] of frame 0:
        stored values & ((1 << BitsStored) - 1), sign-extended from bit BitsStored - 1 when
        PixelRepresentation is 1 (pydicom 2.3 leaves bits above BitsStored alone; DICOM says they
        are not part of the value);
        pydicom.pixel_data_handlers.util.apply_modality_lut;
        VOI LUT Sequence -> apply_voi_lut(prefer_lut=True) / (2**LUTDescriptor[2] - 1);
        WindowCenter/Width -> apply_voi_lut (= apply_windowing), scaled by the y_min / y_max
          pydicom's apply_windowing maps to (so [0, 1]);
        neither, <= 8 bits and no rescale/modality LUT -> full stored range (v - min) / (max - min);
        neither, deeper -> numpy 0.5 / 99.5 percentile window;
        MONOCHROME1 -> 1 - v.
        Colour (SamplesPerPixel 3): pydicom's pixel_array, YBR_* converted with
        convert_color_space(YBR_FULL -> RGB), then 0.299 R + 0.587 G + 0.114 B over the full
        stored range.
  dicom_reference.py modality IN.dcm OUT.npy [IN.dcm OUT.npy ...]
      float32 (H, W) modality values of frame 0 (masked stored values, apply_modality_lut):
      what ps_dicom_read gives with opts.raw.
  dicom_reference.py meta IN.dcm [IN.dcm ...]
      one block per file: "file\\tPATH" then "Keyword\\tvalue" lines, then an empty line.
  dicom_reference.py j2k IN.dcm OUT.dcm [lossy]
      re-encode frame 0 of IN as a JPEG 2000 codestream with Pillow (OpenJPEG) and wrap it with
      pydicom.encaps.encapsulate: lossless (5/3 wavelet, JPEG 2000 Lossless Only,
      1.2.840.10008.1.2.4.90; colour with the reversible component transform, YBR_RCT) or lossy
      (9/7 wavelet at 20:1, JPEG 2000, 1.2.840.10008.1.2.4.91; colour YBR_ICT).
  dicom_reference.py j2kmf IN.dcm OUT.dcm
      3-frame JPEG 2000 Lossless copy of a monochrome film (the film, its complement, zeros),
      each frame split over 2 fragments, no offset table.
  dicom_reference.py bits32 IN.dcm OUT.dcm [signed]
      explicit VR little endian copy with BitsAllocated/BitsStored 32: stored values * 4099 + 7
      (unsigned) or (v - 512) * 4099 (signed, PixelRepresentation 1), no window.
  dicom_reference.py retag IN.dcm OUT.dcm UID
      byte-for-byte copy of IN with its TransferSyntaxUID replaced by UID (even one pydicom does
      not know, e.g. HTJ2K 1.2.840.10008.1.2.4.201): pydicom writes a placeholder transfer
      syntax of the same padded length, which is then patched in the bytes.
  dicom_reference.py multiframe IN.dcm OUT.dcm
      explicit VR little endian copy of a native single-frame 8/16-bit monochrome film with 3 frames:
      the film, its bitwise complement, and zeros (NumberOfFrames 3).
  dicom_reference.py voilut IN.dcm OUT.dcm
      copy with a VOI LUT Sequence (one item: a 16-bit gamma 0.5 curve over the stored range).
  dicom_reference.py modlut IN.dcm OUT.dcm
      copy with a Modality LUT Sequence (16-bit entries, reversed and scaled: 4095 - 4 v) instead of rescale.
"""
import io
import sys
import warnings

import numpy as np
import pydicom
from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut, convert_color_space
from pydicom.uid import ImplicitVRLittleEndian, JPEG2000Lossless

warnings.simplefilter("ignore")


def read(path):
    ds = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in ds.file_meta:
        # ACR-NEMA style (no meta header): pydicom read it as implicit little endian.
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def first_frame(ds):
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[0]
    return arr


def stored_values(arr, bits, pr):
    """Bits above BitsStored are not part of the value (PS3.5 8.1.1): mask them, and for signed
    data sign-extend from bit BitsStored - 1 (pydicom 2.3 does neither)."""
    mask = (1 << bits) - 1
    if pr == 0:
        return arr & mask
    sign = 1 << (bits - 1)
    return ((arr.astype(np.int64) & mask) ^ sign) - sign


def modality(ds):
    arr = first_frame(ds)
    arr = stored_values(arr, int(ds.BitsStored), int(ds.get("PixelRepresentation", 0)))
    return apply_modality_lut(arr, ds).astype(np.float32)


def display(ds):
    arr = first_frame(ds)
    bits = int(ds.BitsStored)
    pr = int(ds.get("PixelRepresentation", 0))
    phot = str(ds.PhotometricInterpretation).strip()
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        if phot in ("YBR_FULL", "YBR_FULL_422"):
            # pydicom leaves YBR data (native, RLE, and JPEG through Pillow's draft mode) as YBR;
            # YBR_RCT / YBR_ICT (JPEG 2000) come back from Pillow/OpenJPEG as RGB already
            arr = convert_color_space(arr, "YBR_FULL", "RGB")
        arr = arr.astype(np.float64)
        y = 0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2]
        return np.clip(y / (2.0 ** bits - 1), 0, 1).astype(np.float32)
    arr = stored_values(arr, bits, pr)
    has_mlut = "ModalityLUTSequence" in ds
    slope = float(ds.get("RescaleSlope", 1) or 1) if "RescaleSlope" in ds else 1.0
    icpt = float(ds.get("RescaleIntercept", 0) or 0) if "RescaleIntercept" in ds else 0.0
    m = apply_modality_lut(arr, ds).astype(np.float64)
    if "VOILUTSequence" in ds:
        v = apply_voi_lut(m, ds, prefer_lut=True).astype(np.float64)
        v = v / (2.0 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        # y_min / y_max exactly as pydicom's apply_windowing chooses them
        if has_mlut:
            y_min, y_max = 0, 2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
        elif pr == 0:
            y_min, y_max = 0, 2 ** bits - 1
        else:
            y_min, y_max = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        if "RescaleSlope" in ds and "RescaleIntercept" in ds:
            y_min = y_min * ds.RescaleSlope + ds.RescaleIntercept
            y_max = y_max * ds.RescaleSlope + ds.RescaleIntercept
        v = apply_voi_lut(m, ds, index=0).astype(np.float64)
        v = (v - y_min) / (y_max - y_min)
    elif bits <= 8 and not has_mlut and slope == 1.0 and icpt == 0.0:
        lo = -(2 ** (bits - 1)) if pr else 0
        v = (m - lo) / (2.0 ** bits - 1)
    else:
        lo, hi = np.percentile(m, [0.5, 99.5])
        v = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    v = np.clip(v, 0, 1)
    if phot == "MONOCHROME1":
        v = 1 - v
    return v.astype(np.float32)


META = ["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Modality",
        "ViewPosition", "BodyPartExamined", "PhotometricInterpretation", "Rows", "Columns",
        "BitsStored", "SamplesPerPixel", "NumberOfFrames", "RescaleSlope", "RescaleIntercept"]


def age_years(ds):
    """The patient's age at the examination as PneumoScope documents it (ps_image.h), from what
    pydicom parses, with Python's own calendar for the dates: PatientAge "nnnD/W/M/Y" (a bare number
    is years), else the first real examination date minus PatientBirthDate; None when neither."""
    import datetime
    import re
    m = re.fullmatch(r" *([0-9]{1,3})([DWMY]?) *", str(ds.get("PatientAge", "") or ""))
    if m:
        n = int(m.group(1))
        years = {"D": n / 365.25, "W": n / (365.25 / 7), "M": n / 12}.get(m.group(2), float(n))
        if years <= 150:
            return years

    def date(k):
        v = str(ds.get(k, "") or "").strip()
        try:
            d = datetime.datetime.strptime(v, "%Y%m%d").date() if re.fullmatch(r"[0-9]{8}", v) else None
        except ValueError:
            return None
        return d if d and d.year >= 1800 else None

    birth = date("PatientBirthDate")
    if birth is None:
        return None
    for k in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        exam = date(k)
        if exam is not None:
            years = (exam - birth).days / 365.25
            return years if 0 <= years <= 150 else None
    return None


def meta(path):
    ds = read(path)
    out = []
    print = lambda s="": out.append(s)  # noqa: E731  (written as UTF-8 below, whatever the locale)
    print("file\t%s" % path)
    for k in META:
        if k in ds and ds[k].value is not None and str(ds[k].value) != "":
            print("%s\t%s" % (k, str(ds[k].value).strip()))
    raw_ts = pydicom.dcmread(path, force=True).file_meta.get("TransferSyntaxUID")
    if raw_ts:
        print("TransferSyntaxUID\t%s" % raw_ts)
    for k in ("PixelSpacing", "ImagerPixelSpacing"):
        if k in ds:
            print("%s\t%r\t%r" % (k, float(ds[k].value[0]), float(ds[k].value[1])))
            break
    age = age_years(ds)
    if age is not None:
        print("PatientAgeYears\t%r" % age)
    for k in ("WindowCenter", "WindowWidth"):
        if k in ds:
            val = ds[k].value
            val = val[0] if isinstance(val, pydicom.multival.MultiValue) else val
            print("%s\t%r" % (k, float(val)))
    print()
    sys.stdout.flush()
    sys.stdout.buffer.write(("\n".join(out) + "\n").encode("utf-8"))
    sys.stdout.buffer.flush()


def j2k(src, dst, lossy=False):
    from PIL import Image
    from pydicom.encaps import encapsulate

    ds = read(src)
    arr = first_frame(ds)
    colour = arr.ndim == 3
    if colour:
        im = Image.fromarray(arr.astype(np.uint8), mode="RGB")
        ds.PhotometricInterpretation = "YBR_ICT" if lossy else "YBR_RCT"
        ds.PlanarConfiguration = 0
    elif arr.dtype == np.uint8:
        im = Image.fromarray(arr, mode="L")
    else:
        im = Image.fromarray(arr.astype(np.uint16), mode="I;16")
    buf = io.BytesIO()
    opts = dict(irreversible=True, quality_mode="rates", quality_layers=[20]) if lossy else dict(irreversible=False)
    im.save(buf, format="JPEG2000", no_jp2=True, mct=1 if colour else 0, **opts)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if "NumberOfFrames" in ds:
        del ds.NumberOfFrames
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000 if lossy else JPEG2000Lossless
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.7")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", pydicom.uid.generate_uid())
    ds.is_implicit_VR = False
    ds.is_little_endian = True
    ds.save_as(dst, write_like_original=False)


def multiframe(src, dst):
    ds = read(src)
    arr = first_frame(ds)
    full = (1 << int(ds.BitsStored)) - 1
    frames = np.stack([arr, (full - arr.astype(np.int64)).astype(arr.dtype), np.zeros_like(arr)])
    ds.PixelData = frames.astype(arr.dtype).tobytes()
    ds["PixelData"].VR = "OB" if arr.dtype.itemsize == 1 else "OW"
    ds.NumberOfFrames = 3
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.7")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", pydicom.uid.generate_uid())
    ds.is_implicit_VR = False
    ds.is_little_endian = True
    ds.save_as(dst, write_like_original=False)


def _native_copy(src):
    ds = read(src)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.7")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", pydicom.uid.generate_uid())
    ds.is_implicit_VR = False
    ds.is_little_endian = True
    return ds


def voilut(src, dst):
    from pydicom.dataset import Dataset
    ds = _native_copy(src)
    n = 1 << int(ds.BitsStored)
    item = Dataset()
    item.LUTDescriptor = [n if n < 65536 else 0, 0, 16]
    item.LUTExplanation = "gamma 0.5"
    item.add_new(0x00283006, "US", [int(round(65535 * (i / (n - 1)) ** 0.5)) for i in range(n)])
    ds.VOILUTSequence = [item]
    for k in ("WindowCenter", "WindowWidth"):
        if k in ds:
            delattr(ds, k)
    ds.save_as(dst, write_like_original=False)


def modlut(src, dst):
    from pydicom.dataset import Dataset
    ds = _native_copy(src)
    n = 1 << int(ds.BitsStored)
    item = Dataset()
    item.LUTDescriptor = [n if n < 65536 else 0, 0, 16]  # pydicom 2.3 only takes 8 or 16
    item.ModalityLUTType = "US"
    item.add_new(0x00283006, "US", [max(0, 4095 - 4 * i) for i in range(n)])
    ds.ModalityLUTSequence = [item]
    for k in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if k in ds:
            delattr(ds, k)
    ds.save_as(dst, write_like_original=False)


def j2kmf(src, dst):
    from PIL import Image
    from pydicom.encaps import encapsulate

    ds = read(src)
    arr = first_frame(ds)
    full = (1 << int(ds.BitsStored)) - 1
    frames = [arr, (full - arr.astype(np.int64)).astype(arr.dtype), np.zeros_like(arr)]
    data = []
    for f in frames:
        im = Image.fromarray(f, mode="L") if f.dtype == np.uint8 else Image.fromarray(f.astype(np.uint16), mode="I;16")
        buf = io.BytesIO()
        im.save(buf, format="JPEG2000", no_jp2=True, irreversible=False)
        data.append(buf.getvalue())
    ds.PixelData = encapsulate(data, fragments_per_frame=2, has_bot=False)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.NumberOfFrames = 3
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.7")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", pydicom.uid.generate_uid())
    ds.is_implicit_VR = False
    ds.is_little_endian = True
    ds.save_as(dst, write_like_original=False)


def bits32(src, dst, signed=False):
    ds = _native_copy(src)
    arr = first_frame(ds).astype(np.int64)
    if signed:
        out = ((arr - 512) * 4099).astype(np.int32)
    else:
        out = (arr * 4099 + 7).astype(np.uint32)
    ds.BitsAllocated = 32
    ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = out.tobytes()
    ds["PixelData"].VR = "OW"
    for k in ("WindowCenter", "WindowWidth"):
        if k in ds:
            delattr(ds, k)
    ds.save_as(dst, write_like_original=False)


def retag(src, dst, uid):
    ds = pydicom.dcmread(src)
    padded = len(uid) + (len(uid) & 1)
    known = [u for u in pydicom.uid.AllTransferSyntaxes if len(u) + (len(u) & 1) == padded and u.is_compressed]
    if not known:
        raise SystemExit("no placeholder transfer syntax of length %d" % padded)
    ph = known[0]
    ds.file_meta.TransferSyntaxUID = ph
    out = io.BytesIO()
    ds.save_as(out)
    b = out.getvalue()
    old = ph.encode() + (b"\0" if len(ph) & 1 else b"")
    new = uid.encode() + (b"\0" if len(uid) & 1 else b"")
    if b.count(old) != 1:
        raise SystemExit("placeholder %s not unique in the file" % ph)
    open(dst, "wb").write(b.replace(old, new))


def main(argv):
    if len(argv) >= 3 and argv[0] == "pixels" and len(argv) % 2 == 1:
        for i in range(1, len(argv), 2):
            np.save(argv[i + 1], display(read(argv[i])))
    elif len(argv) >= 3 and argv[0] == "modality" and len(argv) % 2 == 1:
        for i in range(1, len(argv), 2):
            np.save(argv[i + 1], modality(read(argv[i])))
    elif len(argv) == 3 and argv[0] in ("multiframe", "voilut", "modlut"):
        {"multiframe": multiframe, "voilut": voilut, "modlut": modlut}[argv[0]](argv[1], argv[2])
    elif len(argv) >= 2 and argv[0] == "meta":
        for p in argv[1:]:
            meta(p)
    elif len(argv) in (3, 4) and argv[0] == "j2k":
        j2k(argv[1], argv[2], len(argv) == 4 and argv[3] == "lossy")
    elif len(argv) in (3, 4) and argv[0] == "bits32":
        bits32(argv[1], argv[2], len(argv) == 4 and argv[3] == "signed")
    elif len(argv) == 3 and argv[0] == "j2kmf":
        j2kmf(argv[1], argv[2])
    elif len(argv) == 4 and argv[0] == "retag":
        retag(argv[1], argv[2], argv[3])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
