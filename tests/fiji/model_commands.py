"""fiji_imagej, model part (imported by check_fiji.py when libtorch is built): ImageJ runs
model_commands.ijm (Classify Chest Film on ImageJ-opened and PneumoScope-opened films and on bare
pixels, Grad-CAM Overlay, Batch Classify Folder, About) with a seeded torchvision ResNet18 written
by make_test_model.py; every number is compared with the CLI on the same model and films:
`pneumoscope classify --csv`, `pneumoscope gradcam --json --npy`. The out-of-distribution columns
(in_distribution, ood_score, ood_reason) are checked in every table and CSV against the CLI's; a
copy of a DICOM relabelled Modality CT is flagged (label kept) in the table, the batch CSV and the Log.
The model choice: model=binary / model=3class (bundled, by name), model=file model_file=[...],
model=[path] and model=[] as older macros wrote them; a missing model file is a clear error.
The bundled binary model (224 px, with an OOD detector) gives a known verdict and score equal to
`pneumoscope classify --csv --model binary`, and flags an adult NIH film; the 96 px legacy model in
tests/data (no detector) leaves the verdict unknown; About logs each model's input size and threshold
as its safetensors metadata says."""
import csv
import io
import json
import os
import sys
import shutil

import struct

import numpy as np
from PIL import Image


def cli_csv(chk, model, paths):
    p = chk.run([os.environ["PS_CLI"], "classify", "--csv", "--model", model, "--device", "cpu"] + paths)
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    return p, {os.path.abspath(r["file"]): r for r in rows}, rows


def close(a, b, tol=1e-4):
    return abs(float(a) - float(b)) <= tol


OOD = ("in_distribution", "ood_score", "ood_reason")


def ood_kind_ok(r):
    """The OOD columns are there with values of the declared kinds: in_distribution true / false / empty
    (unknown), ood_score a number or empty (unknown), ood_reason non-empty exactly when flagged."""
    if not all(k in r for k in OOD) or r["in_distribution"] not in ("true", "false", ""):
        return False
    if r["ood_score"] not in ("", "NaN"):
        try:
            float(r["ood_score"])
        except ValueError:
            return False
    return (r["in_distribution"] == "false") == (r["ood_reason"] != "")


def ood_same(r, c):
    """ImageJ's OOD columns equal the CLI csv row's."""
    if "in_distribution" not in c:
        return False
    a, b = r["ood_score"], c["ood_score"]
    score = a == b == "" or (a != "" and b != "" and abs(float(a) - float(b)) <= 1e-4 * max(1.0, abs(float(b))))
    return r["in_distribution"] == c["in_distribution"] and r["ood_reason"] == c["ood_reason"] and score


def ood_text(r):
    return "in_distribution %r, ood_score %r, ood_reason %r" % tuple(r.get(k) for k in OOD)


def ood_known(r):
    """A model with a detector: the verdict is true / false and the score a number."""
    try:
        score = float(r["ood_score"])
    except (KeyError, ValueError):
        return False
    return r.get("in_distribution") in ("true", "false") and score == score


def ood_unknown(r):
    """A model without a detector (or a film that could not be read): every OOD column empty."""
    return r.get("in_distribution") == "" and r.get("ood_score") in ("", "NaN") and r.get("ood_reason") == ""


def safetensors_meta(path):
    """The __metadata__ of a .safetensors file (8-byte little-endian header length, JSON header)."""
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        return json.loads(fh.read(n)).get("__metadata__", {})


def about_block(log, name):
    """The lines About / Model Info logged for the model file called name: {"Task": ..., "Input size": ...}."""
    lines = log.splitlines()
    for i, l in enumerate(lines):
        if l.startswith("Model: ") and os.path.basename(l[7:].strip()) == name:
            kv = {}
            for m in lines[i + 1:]:
                if m.startswith("Model: ") or ": " not in m:
                    break
                k, v = m.split(": ", 1)
                kv[k] = v
            return kv
    return {}


def last_row(path):
    return list(csv.DictReader(open(path)))[-1:] if os.path.exists(path) else []


def run_all(chk, fiji, tmp, data, sample):
    check = chk.check
    E = os.environ
    model = os.path.join(tmp, "test-binary.safetensors")
    legacy = os.path.join(E["PS_SOURCE_DIR"], "tests", "data", "legacy-binary96.safetensors")
    adult = os.path.join(data, "png", "nih_00000001_000.png")
    check(os.path.isfile(legacy), "legacy model without an OOD detector " + legacy)
    p = chk.run([E["PS_PYTHON"], os.path.join(chk.HERE, "make_test_model.py"), model, "2", "7"])
    check(p.returncode == 0, "make_test_model.py " + p.stderr[-300:])
    films_dir = os.path.join(sample, "films")
    films = [os.path.join(data, "kaggle", "NORMAL", "IM-0117-0001.jpeg"),
             os.path.join(data, "dicom", "siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"),
             os.path.join(data, "dicom", "CR-MONO1-10-chest.dcm"),
             os.path.join(data, "png", "nih_00000001_000.png")]
    rgb = [os.path.join(r, f) for r, _, fs in os.walk(films_dir) for f in fs if "virus" in f][:1]
    films += rgb
    # a chest DX relabelled Modality CT: its header says it is no radiograph, so the verdict flags it
    ct = os.path.join(tmp, "ct-modality.dcm")
    dcmodify = shutil.which("dcmodify")
    if dcmodify:
        shutil.copy(os.path.join(data, "dicom", "gcp_dicom_00000001_000.dcm"), ct)
        p = chk.run([dcmodify, "-nb", "-m", "(0008,0060)=CT", ct])
        check(p.returncode == 0, "dcmodify: a copy with Modality CT " + p.stderr[-300:])
        films.append(ct)
    else:
        print("note: dcmodify (dcmtk) not found: no film with a non-radiograph Modality in this run")
    lst = os.path.join(tmp, "films.list")
    with open(lst, "w") as fh:
        fh.write("\n".join(films))
    out = os.path.join(tmp, "out")
    os.makedirs(out)
    mixed = os.path.join(tmp, "mixed")
    os.makedirs(os.path.join(mixed, "nested"))
    with open(films[1], "rb") as fh:
        open(os.path.join(mixed, "IMG0001"), "wb").write(fh.read())            # DICOM, no extension
    with open(films[2], "rb") as fh:
        open(os.path.join(mixed, "nested", "cr-film"), "wb").write(fh.read())
    with open(films[0], "rb") as fh:
        open(os.path.join(mixed, "broken.jpeg"), "wb").write(fh.read()[:3000])  # truncated JPEG
    open(os.path.join(mixed, "notes.txt"), "w").write("not a film\n")
    if os.path.exists(ct):
        shutil.copy(ct, os.path.join(mixed, "ct-film.dcm"))
    p = chk.imagej(fiji, "model_commands.ijm", " ".join([lst, model, out, films_dir, mixed, adult, legacy]), timeout=400)
    ij_out = p.stdout + p.stderr
    check(p.returncode == 0 and "model_commands: done" in ij_out, "ImageJ ran model_commands.ijm")

    # ---- Classify Chest Film vs pneumoscope classify --csv --------------------------------------
    p, cli, _ = cli_csv(chk, model, films)
    check(p.returncode == 0 and len(cli) == len(films), "pneumoscope classify --csv on %d films" % len(films))
    res_path = os.path.join(out, "results.csv")
    rows = list(csv.DictReader(open(res_path))) if os.path.exists(res_path) else []
    # ImageJ fills string cells of rows that lack a column with "0"
    is_cam = lambda r: r.get("CAM_Method") not in (None, "", "0")
    # one row per film and model: Grad-CAM fills in the row Classify started (Fiji's habit)
    classify_rows = rows
    check(len(classify_rows) == len(films) + 1, "Results table: one row per film: %d rows for %d films + the pixels copy"
          % (len(classify_rows), len(films)))
    by_file = {os.path.abspath(r["File"]): r for r in classify_rows if r["Source"] == "file"}
    for f in films:
        name = os.path.basename(f)
        r, c = by_file.get(os.path.abspath(f)), cli.get(os.path.abspath(f))
        if not r or not c:
            check(False, name + ": row in ImageJ results and CLI csv")
            continue
        check(r["Label"] == c["label"], name + ": label %s = CLI %s" % (r["Label"], c["label"]))
        for k in ["NORMAL", "PNEUMONIA"]:
            check(close(r["P_" + k], c["p_" + k]), name + ": P_%s %s = CLI %s" % (k, r["P_" + k], c["p_" + k]))
        for k in ["PatientID", "SOPInstanceUID", "ViewPosition"]:
            check(r[k] == c[k], name + ": %s %r = CLI %r" % (k, r[k], c[k]))
        check(r["Model"] == os.path.basename(model), name + ": model column")
        check(ood_kind_ok(r) and ood_same(r, c), name + ": %s = CLI %s" % (ood_text(r), ood_text(c)))
        if c.get("in_distribution") == "false":
            check("%s: %s" % (os.path.basename(f), r["Label"]) in ij_out and "flagged OUT OF DISTRIBUTION: " + c["ood_reason"] in ij_out,
                  name + ": the Log says the film is flagged out of distribution, and why")
    check("model " + model in ij_out, "the Log names the model file " + model)
    if os.path.exists(ct):
        r = by_file.get(os.path.abspath(ct), {})
        check(r.get("in_distribution") == "false" and "modality CT" in r.get("ood_reason", "") and r.get("Label"),
              "the Modality CT film is flagged, its label kept: %s" % ood_text(r))
    # the test model has no detector: the other films are unknown
    check(all(by_file.get(os.path.abspath(f), {}).get("in_distribution") == "" for f in films if f != ct),
          "model without an OOD detector: in_distribution empty for the radiographs")
    pix = [r for r in classify_rows if r["Source"] == "pixels"]
    c0 = cli.get(os.path.abspath(films[0]))
    if pix and c0:
        # an 8-bit JPEG's pixels through the display range 0..255 are the film itself
        check(pix[0]["Title"] == "pixels-copy" and pix[0]["Label"] == c0["label"]
              and close(pix[0]["P_PNEUMONIA"], c0["p_PNEUMONIA"], 1e-4),
              "pixels of a duplicate (no file behind it): P %s = CLI %s" % (pix[0]["P_PNEUMONIA"], c0["p_PNEUMONIA"]))
    else:
        check(False, "pixels-copy row present")

    # ---- Grad-CAM Overlay vs pneumoscope gradcam --json --npy ----------------------------------
    npy = os.path.join(tmp, "cam.npy")
    p = chk.run([E["PS_CLI"], "gradcam", "--model", model, "--device", "cpu", "--json", "--npy", npy, films[0]])
    check(p.returncode == 0, "pneumoscope gradcam --json --npy")
    cams = [r for r in rows if is_cam(r)]
    check(len(cams) == 1 and os.path.abspath(cams[0]["File"]) == os.path.abspath(films[0]),
          "both Grad-CAMs of the first film filled in its Classify row (%d rows with CAM columns)" % len(cams))
    # the row holds the last Grad-CAM: explicit class PNEUMONIA at layer3 (Grad-CAM proper, autograd)
    p3 = chk.run([E["PS_CLI"], "gradcam", "--model", model, "--device", "cpu", "--json", "--layer", "layer3", "--class",
                  "PNEUMONIA", films[0]])
    check(p3.returncode == 0, "pneumoscope gradcam --layer layer3 --class PNEUMONIA --json")
    if p.returncode == 0 and p3.returncode == 0 and cams:
        j = json.loads(p3.stdout)
        check(cams[0]["CAM_Layer"] == "layer3" and cams[0]["CAM_Class"] == j["explained_class"] == "PNEUMONIA"
              and cams[0]["CAM_Method"] == "gradcam", "the row's Grad-CAM: %s %s %s = CLI %s layer3"
              % (cams[0]["CAM_Class"], cams[0]["CAM_Layer"], cams[0]["CAM_Method"], j["explained_class"]))
        check(close(cams[0]["LungFocus"], j["lung_focus"], 1e-4),
              "lung focus %s = CLI %s" % (cams[0]["LungFocus"], j["lung_focus"]))
        r0 = by_file.get(os.path.abspath(films[0]), {})
        check(all(ood_kind_ok(c) and all(c[k] == r0.get(k) for k in OOD) for c in cams),
              "the Grad-CAM row keeps the film's OOD columns: %s" % [ood_text(c) for c in cams])
        check(int(float(cams[0]["Lungs"])) == j["lungs"], "lungs %s = CLI %s" % (cams[0]["Lungs"], j["lungs"]))
        ref = np.load(npy)
        tif = os.path.join(out, "heatmap.tif")
        if os.path.exists(tif):
            heat = np.asarray(Image.open(tif), dtype=np.float32)  # ImageJ's 32-bit TIFF, read by Pillow
            check(heat.shape == ref.shape, "heatmap size %s = CLI cam %s" % (heat.shape, ref.shape))
            if heat.shape == ref.shape:
                d = float(np.abs(heat - ref).max())
                check(d < 1e-5, "heatmap pixels = CLI cam.npy (max diff %g)" % d)
        else:
            check(False, "heatmap.tif written by ImageJ")
    ov = os.path.join(out, "overlay.txt")
    if os.path.exists(ov):
        kv = dict(l.split("=", 1) for l in open(ov).read().splitlines() if "=" in l)
        check(kv.get("overlays") == "1" and kv.get("name", "").startswith("Grad-CAM")
              and kv.get("bounds") == "0,0,%s,%s" % (kv.get("width"), kv.get("height")),
              "one Grad-CAM ImageRoi covering the image: %s" % kv)
    else:
        check(False, "overlay.txt written")

    # ---- Batch Classify Folder vs pneumoscope classify --csv FOLDER -----------------------------
    p, cli_all, cli_rows = cli_csv(chk, model, [films_dir])
    bpath = os.path.join(out, "batch.csv")
    brows = list(csv.DictReader(open(bpath))) if os.path.exists(bpath) else []
    check(bool(brows) and all(k in brows[0] for k in OOD), "batch CSV has the columns %s" % (OOD,))
    check(len(brows) == len(cli_rows) and len(brows) > 0, "batch CSV rows %d = CLI rows %d" % (len(brows), len(cli_rows)))
    for b, c in zip(brows, cli_rows):
        name = os.path.basename(c["file"])
        same = os.path.abspath(b["File"]) == os.path.abspath(c["file"]) and b["Label"] == c["label"]
        if c["label"]:
            same = same and close(b["P_PNEUMONIA"], c["p_PNEUMONIA"], 1e-5) and b["SOPInstanceUID"] == c["SOPInstanceUID"]
        else:
            same = same and b["Error"] != ""
        same = same and ood_kind_ok(b) and ood_same(b, c)
        check(same, "batch %s: %s %s = CLI %s %s" % (name, b["Label"], b.get("P_PNEUMONIA"), c["label"], c["p_PNEUMONIA"]))

    # mixed folder: bad files are rows with their error and listed in the Log, not fatal
    p, _, cli_rows = cli_csv(chk, model, [mixed])
    bpath = os.path.join(out, "batch-mixed.csv")
    brows = list(csv.DictReader(open(bpath))) if os.path.exists(bpath) else []
    names = [os.path.basename(r["File"]) for r in brows]
    check(names == [os.path.basename(c["file"]) for c in cli_rows] and "notes.txt" not in names
          and len(names) == 3 + os.path.exists(ct), "mixed folder: rows %s = CLI rows (notes.txt skipped)" % names)
    cli_by_name = {os.path.basename(c["file"]): c for c in cli_rows}
    for b in brows:
        n = os.path.basename(b["File"])
        if n == "broken.jpeg":
            check(b["Label"] == "" and "broken.jpeg" in b["Error"], "broken.jpeg is an error row: %r" % b["Error"])
            check("broken.jpeg" in ij_out and "could not be read" in ij_out, "broken.jpeg listed in the Log")
            check(ood_kind_ok(b) and b["in_distribution"] == "" and b["ood_score"] in ("", "NaN"),
                  "broken.jpeg: OOD columns empty (%s)" % ood_text(b))
        else:
            check(b["Label"] in ("NORMAL", "PNEUMONIA") and b["Error"] == "", n + " classified: " + b["Label"])
            c = cli_by_name.get(n, {})
            check(ood_kind_ok(b) and ood_same(b, c), "batch %s: %s = CLI %s" % (n, ood_text(b), ood_text(c)))
            if c.get("in_distribution") == "false":
                check(b["in_distribution"] == "false" and b["Label"] != ""
                      and "flagged out of distribution (label still given): " + b["File"] in ij_out,
                      n + ": flagged in the batch CSV (label kept) and listed in the Log")
    check("classified with model " + model in ij_out, "the batch summary in the Log names the model file")

    # ---- model=[]: the bundled model installed into Fiji.app/models/pneumoscope ---------------------
    bundled = os.path.join(E["PS_SOURCE_DIR"], "sample_data", "models", "pneumoscope-binary.safetensors")
    drow = last_row(os.path.join(out, "default.csv"))
    if os.path.exists(bundled):
        _, cdef, _ = cli_csv(chk, bundled, [films[0]])
        c = cdef.get(os.path.abspath(films[0]))
        check(c is not None and len(drow) == 1 and drow[0]["Model"] == "pneumoscope-binary.safetensors"
              and drow[0]["Label"] == c["label"] and close(drow[0]["P_PNEUMONIA"], c["p_PNEUMONIA"]),
              "model=[] uses the bundled model: %s %s = CLI --model bundled %s %s"
              % (drow and drow[0]["Model"], drow and drow[0]["P_PNEUMONIA"], c and c["label"], c and c["p_PNEUMONIA"]))
        # the bundled model carries a detector: the verdict is known, and the CLI's
        check(c is not None and len(drow) == 1 and ood_known(c) and ood_known(drow[0]) and ood_same(drow[0], c),
              "model=[]: %s = CLI --model bundled %s (known verdict, numeric score)"
              % (drow and ood_text(drow[0]), c and ood_text(c)))
    else:
        check("no default model found" in ij_out, "no bundled model: Classify with model=[] says so")

    # ---- model=binary: the bundled model by name ---------------------------------------------------
    if os.path.exists(bundled):
        meta = safetensors_meta(bundled)
        _, cbin, _ = cli_csv(chk, "binary", [films[0], adult])
        for f, csvname in [(films[0], "binary.csv"), (adult, "binary-adult.csv")]:
            brow = last_row(os.path.join(out, csvname))
            c = cbin.get(os.path.abspath(f))
            check(c is not None and len(brow) == 1 and brow[0]["Model"] == "pneumoscope-binary.safetensors"
                  and os.path.abspath(brow[0]["File"]) == os.path.abspath(f)
                  and brow[0]["Label"] == c["label"]
                  and all(close(brow[0]["P_" + k], c["p_" + k]) for k in ("NORMAL", "PNEUMONIA")),
                  "model=binary on %s: %s %s = CLI --model binary %s %s"
                  % (os.path.basename(f), brow and brow[0]["Label"], brow and brow[0]["P_PNEUMONIA"],
                     c and c["label"], c and c["p_PNEUMONIA"]))
            check(c is not None and len(brow) == 1 and ood_known(c) and ood_kind_ok(brow[0])
                  and ood_known(brow[0]) and ood_same(brow[0], c),
                  "model=binary on %s: %s = CLI --model binary %s (known verdict, numeric score)"
                  % (os.path.basename(f), brow and ood_text(brow[0]), c and ood_text(c)))
            if f == adult and c is not None:
                # the bundled model is trained on pediatric films: an adult NIH film is outside them
                check(c["in_distribution"] == "false" and len(brow) == 1 and brow[0]["in_distribution"] == "false"
                      and brow[0]["Label"] != ""
                      and "flagged OUT OF DISTRIBUTION: " + c["ood_reason"] in ij_out,
                      "model=binary flags the adult film %s (label %s kept) and the Log says why: %s"
                      % (os.path.basename(f), brow and brow[0]["Label"], brow and ood_text(brow[0])))
        # About / Model Info: the bundled model's own metadata (224 px input, its threshold)
        kv = about_block(ij_out, "pneumoscope-binary.safetensors")
        thr = kv.get("Threshold on P(PNEUMONIA)", "nan")
        c0 = cbin.get(os.path.abspath(films[0])) or {}
        check(kv.get("Task") == "binary" and kv.get("Input size") == meta.get("input_size") == "224"
              and close(thr, meta.get("threshold", "nan"), 1e-6) and close(thr, c0.get("threshold", "nan"), 1e-6),
              "About model=binary: input size %s, threshold %s = metadata %s, %s (CLI %s)"
              % (kv.get("Input size"), thr, meta.get("input_size"), meta.get("threshold"), c0.get("threshold")))
    else:
        check("binary model is not installed" in ij_out, "no bundled model: model=binary says so")

    # ---- a model without an OOD detector: the 96 px legacy model in tests/data -----------------------
    lrow = last_row(os.path.join(out, "legacy.csv"))
    _, cleg, _ = cli_csv(chk, legacy, [films[0]])
    c = cleg.get(os.path.abspath(films[0]))
    check(c is not None and len(lrow) == 1 and lrow[0]["Model"] == os.path.basename(legacy)
          and lrow[0]["Label"] == c["label"] and all(close(lrow[0]["P_" + k], c["p_" + k]) for k in ("NORMAL", "PNEUMONIA")),
          "model=file legacy-binary96: %s %s = CLI %s %s" % (lrow and lrow[0]["Label"], lrow and lrow[0]["P_PNEUMONIA"],
                                                           c and c["label"], c and c["p_PNEUMONIA"]))
    check(c is not None and len(lrow) == 1 and ood_unknown(c) and ood_kind_ok(lrow[0]) and ood_unknown(lrow[0])
          and ood_same(lrow[0], c),
          "model without a detector: verdict unknown, %s = CLI %s" % (lrow and ood_text(lrow[0]), c and ood_text(c)))
    lmeta = safetensors_meta(legacy)
    kv = about_block(ij_out, os.path.basename(legacy))
    check(kv.get("Input size") == lmeta.get("input_size") == "96"
          and close(kv.get("Threshold on P(PNEUMONIA)", "nan"), lmeta.get("threshold", "nan"), 1e-6),
          "About legacy-binary96: input size %s, threshold %s = metadata %s, %s"
          % (kv.get("Input size"), kv.get("Threshold on P(PNEUMONIA)"), lmeta.get("input_size"), lmeta.get("threshold")))

    # ---- a missing model file: a clear message, the macro stops, ImageJ goes on ------------------------
    missing = os.path.join(out, "no-such-model.safetensors")
    check("model_commands: a missing model did not stop the macro" not in ij_out
          and "Classify Chest Film: PS_E" in ij_out and missing in ij_out and "Exception in thread" not in ij_out,
          "model_file=[no-such-model.safetensors]: a clear error naming the file, the macro stopped")

    # ---- model=3class (second ImageJ run): classified when installed, else a clear error --------------
    film = adult
    p = chk.imagej(fiji, "model_choice.ijm", " ".join([film, out]), timeout=240)
    ij3 = p.stdout + p.stderr
    three = os.path.join(E["PS_SOURCE_DIR"], "sample_data", "models", "pneumoscope-3class.safetensors")
    if os.path.exists(three):
        _, c3, _ = cli_csv(chk, "3class", [film])
        c = c3.get(os.path.abspath(film))
        rp = os.path.join(out, "3class.csv")
        r = list(csv.DictReader(open(rp)))[-1:] if os.path.exists(rp) else []
        check(p.returncode == 0 and "model_choice: 3class classified" in ij3, "ImageJ ran model_choice.ijm")
        check(c is not None and len(r) == 1 and r[0]["Model"] == "pneumoscope-3class.safetensors"
              and os.path.abspath(r[0]["File"]) == os.path.abspath(film) and r[0]["Label"] == c["label"]
              and all(close(r[0]["P_" + k], c["p_" + k]) for k in ("NORMAL", "BACTERIA", "VIRUS")),
              "model=3class: %s = CLI --model 3class %s" % (r and r[0], c))
        # with a detector in the file the verdict is known; without one, unknown; either way the CLI's
        meta3 = safetensors_meta(three)
        has_detector = "ood_threshold" in meta3
        check(c is not None and len(r) == 1 and ood_kind_ok(r[0]) and ood_same(r[0], c)
              and (ood_known(r[0]) if has_detector else ood_unknown(r[0])),
              "model=3class (%s): %s = CLI --model 3class %s"
              % ("OOD detector" if has_detector else "no OOD detector", r and ood_text(r[0]), c and ood_text(c)))
    else:
        check(p.returncode == 0 and "model_choice: 3class classified" not in ij3
              and "3class model is not installed" in ij3 and "pneumoscope-3class.safetensors" in ij3
              and "Exception in thread" not in ij3,
              "model=3class without the 3-class model: a clear error naming pneumoscope-3class.safetensors")

    # ---- About / Model Info ----------------------------------------------------------------------
    # in -batch mode IJ.log prints to stdout (there is no Log window)
    lp = os.path.join(out, "log.txt")
    log = (open(lp).read() if os.path.exists(lp) else "") + ij_out
    check("Task: binary" in log and "Classes: NORMAL, PNEUMONIA" in log and "Fiji test model" in log,
          "About / Model Info logs the model's metadata")


def train_eval(chk, fiji, tmp, data):
    """Train Model... / Evaluate Model... in ImageJ against `pneumoscope evaluate` on the same model."""
    check = chk.check
    sys.path.insert(0, os.path.join(chk.HERE, "..", "ref"))
    import safetensors_io  # the reference reader of the trained models' metadata and tensors
    E = os.environ
    split = os.path.join(tmp, "split")
    p = chk.run([E["PS_CLI"], "split", os.path.join(data, "kaggle"), "-o", split, "--seed", "1"])
    check(p.returncode == 0, "pneumoscope split " + p.stderr[-300:])
    # a small leakage-free subset with both classes in every split (6 + 6 films each)
    manifest = os.path.join(split, "small.csv")
    with open(os.path.join(split, "manifest.csv")) as fh:
        rd = csv.DictReader(fh)
        fields, keep, count = rd.fieldnames, [], {}
        for r in rd:
            k = (r["split"], r["label"])
            if count.get(k, 0) < 6:
                count[k] = count.get(k, 0) + 1
                keep.append(r)
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(keep)
    rundir, evaldir, out = os.path.join(tmp, "run"), os.path.join(tmp, "eval-ij"), os.path.join(tmp, "out-train")
    os.makedirs(out)
    film = os.path.join(data, "png", "nih_00000001_000.png")
    p = chk.imagej(fiji, "train_eval.ijm", " ".join([manifest, rundir, evaldir, film, out]), timeout=500)
    ij_out = p.stdout + p.stderr
    check(p.returncode == 0 and "train_eval: done" in ij_out, "ImageJ ran train_eval.ijm")
    best = os.path.join(rundir, "best.safetensors")
    check(os.path.isfile(best), "Train Model... wrote best.safetensors")
    if os.path.isfile(best):  # patient_ages=1-5 reached the model, as `train --patient-ages 1-5` stores it
        _, bmeta = safetensors_io.load(best)
        check(bmeta.get("patient_ages") == "1-5", "Train Model... patient_ages=1-5 stored: %r" % bmeta.get("patient_ages"))
    # init=binary finetune: the bundled model fine-tuned, its classifier kept (lr 1e-9: unchanged)
    ft = os.path.join(rundir + "-ft", "best.safetensors")
    if os.path.isfile(ft):
        sd, meta = safetensors_io.load(ft)
        bsd, _ = safetensors_io.load(os.path.join(chk.HERE, "..", "..", "sample_data", "models", "pneumoscope-binary.safetensors"))
        d = (sd["fc.weight"].float() - bsd["fc.weight"].float()).abs().max().item()
        check("fine-tuned from --init (fc kept)" in meta.get("provenance", "") and d <= 1e-6,
              "Train Model... init=binary finetune: the bundled classifier kept (max |dfc| %.2g)" % d)
    else:
        check(False, "Train Model... init=binary finetune wrote %s" % ft)
    check("train:" in ij_out and "epoch" in ij_out, "per-epoch training lines reached IJ.log")
    tr = os.path.join(out, "training.csv")
    trows = list(csv.DictReader(open(tr))) if os.path.exists(tr) else []
    hist = list(csv.DictReader(open(os.path.join(rundir, "history.csv")))) if os.path.exists(os.path.join(rundir, "history.csv")) else []
    check(len(trows) == 1 and len(hist) == 1, "training table has the 1 epoch of history.csv (%d, %d)" % (len(trows), len(hist)))
    # the same model evaluated by the CLI
    evcli = os.path.join(tmp, "eval-cli")
    p = chk.run([E["PS_CLI"], "evaluate", "--model", best, "--manifest", manifest, "--split", "test",
                 "--device", "cpu", "-o", evcli])
    check(p.returncode == 0, "pneumoscope evaluate " + p.stderr[-300:])
    ev = os.path.join(out, "evaluation.csv")
    erows = list(csv.DictReader(open(ev))) if os.path.exists(ev) else []
    mj = os.path.join(evcli, "metrics.json")
    if erows and os.path.exists(mj):
        m = json.load(open(mj))
        flat = {}
        def walk(d, pre=""):
            for k, v in d.items():
                if isinstance(v, dict):
                    walk(v, pre + k + ".")
                else:
                    flat[pre + k] = v
        walk(m)
        r = erows[0]
        check(os.path.abspath(r["Model"]) == os.path.abspath(best), "Evaluate model=[] used the new default " + r["Model"])
        for col, key in [("N", "n"), ("Accuracy", "accuracy"), ("AUC", "roc_auc"), ("AP", "average_precision"),
                         ("F1_macro", "macro.f1"), ("Threshold", "threshold")]:
            v = flat.get(key)
            check(isinstance(v, (int, float)) and close(r[col], v, 1e-5),
                  "Evaluate %s %s = CLI metrics.json %s %s" % (col, r[col], key, v))
    else:
        check(False, "evaluation table and CLI metrics.json present")
    # the plots come from ps_evaluate_run itself: ImageJ must write and show them whenever the CLI does
    plots = [png for png in ["confusion.png", "roc.png"] if os.path.isfile(os.path.join(evcli, png))]
    for png in ["confusion.png", "roc.png"]:
        check(os.path.isfile(os.path.join(evaldir, png)) == (png in plots),
              "Evaluate Model... wrote %s as the CLI did (%s)" % (png, png in plots))
    imgs = open(os.path.join(out, "eval_images.txt")).read() if os.path.exists(os.path.join(out, "eval_images.txt")) else ""
    if plots:
        check("Confusion matrix" in imgs and "ROC" in imgs, "confusion matrix and ROC shown as images: %r" % imgs)
    else:
        print("note: this library writes no evaluation plots (pneumoscope evaluate wrote none either)")
    dc = os.path.join(out, "default_classify.csv")
    drows = list(csv.DictReader(open(dc))) if os.path.exists(dc) else []
    check(len(drows) == 1 and drows[0]["Model"] == "best.safetensors", "Classify model=[] uses the trained default")
    if drows:
        _, cli, _ = cli_csv(chk, best, [film])
        c = cli.get(os.path.abspath(film))
        check(c is not None and close(drows[0]["P_PNEUMONIA"], c["p_PNEUMONIA"]),
              "trained model: ImageJ P %s = CLI %s" % (drows[0]["P_PNEUMONIA"], c and c["p_PNEUMONIA"]))
        check(c is not None and ood_kind_ok(drows[0]) and ood_same(drows[0], c),
              "trained model: ImageJ %s = CLI %s" % (ood_text(drows[0]), c and ood_text(c)))
        # train fits the detector: the verdict is known and scored
        check(drows[0]["in_distribution"] in ("true", "false") and drows[0]["ood_score"] not in ("", "NaN"),
              "trained model has an OOD detector: in_distribution %r, ood_score %r"
              % (drows[0]["in_distribution"], drows[0]["ood_score"]))
