"""fiji_imagej_zip (imported by check_fiji.py): the release archive (plugin/fiji_bundle.sh zip, what
`cmake --build build --target fiji-zip` runs) unzipped into an empty folder is a self-contained
Fiji.app: every library in lib/linux64 resolves its dependencies inside lib/linux64 (ldd with no
LD_LIBRARY_PATH; glibc's own libraries aside) with RUNPATH $ORIGIN, and no libtorch is in it. Real
ImageJ then runs zip_commands.ijm from that tree with PNEUMOSCOPE_TORCH_BACKEND naming nothing:
Classify Chest Film (a JPEG and a DICOM) and a layer4 Grad-CAM Overlay work, and the table's
probabilities equal `pneumoscope classify --csv --model binary` on the same films. Then (zip_train.ijm)
Train Model's libtorch field, with the variable still naming nothing: a folder without libtorch stops
the macro with a message that says how to get it; Debian's libtorch folder trains with the archive's
libpneumoscope_torch-1.13.so, and Evaluate Model works without the plot module and says so."""
import csv
import os
import re
import subprocess

GLIBC = re.compile(r"^(ld-linux-x86-64\.so\.2|libc\.so\.6|libm\.so\.6|libmvec\.so\.1|libdl\.so\.2|libpthread\.so\.0|"
                   r"librt\.so\.1|libresolv\.so\.2|libutil\.so\.1|libanl\.so\.1|libnsl\.so\.1|libcrypt\.so\.1|"
                   r"linux-vdso\.so\.1)$")


def run_zip(chk, tmp, data):
    check, E = chk.check, os.environ
    z = os.path.join(tmp, "PneumoScope-linux64.zip")
    p = chk.run(["bash", os.path.join(E["PS_SOURCE_DIR"], "plugin", "fiji_bundle.sh"), "zip", z, E["PS_PLUGIN_JAR"],
                 E["PS_LIB_DIR"], E["PS_SOURCE_DIR"]])
    print(p.stdout.strip())
    check(p.returncode == 0, "fiji_bundle.sh zip: " + p.stderr[-400:])
    root = os.path.join(tmp, "unzipped")
    os.makedirs(root)
    p = chk.run(["cmake", "-E", "chdir", root, "cmake", "-E", "tar", "xf", z])
    check(p.returncode == 0, "unzip the archive " + p.stderr[-300:])
    fiji = os.path.join(root, "Fiji.app")
    lib = os.path.join(fiji, "lib", "linux64")
    for rel in ["plugins/PneumoScope_.jar", "lib/linux64/libpneumoscope_jni.so", "lib/linux64/libpneumoscope.so",
                "models/pneumoscope/pneumoscope-binary.safetensors", "macros/PneumoScope"]:
        check(os.path.exists(os.path.join(fiji, rel)), "archive holds Fiji.app/" + rel)
    names = sorted(f for f in os.listdir(lib) if ".so" in f and os.path.isfile(os.path.join(lib, f))
                   and not os.path.islink(os.path.join(lib, f)))
    check(os.path.isfile(os.path.join(lib, "dcmtk", "dicom.dic")), "DCMTK's data dictionary ships in lib/linux64/dcmtk")
    check(not any(n.startswith(("libtorch", "libc10")) or n == "libpneumoscope_torch.so" for n in names),
          "no libtorch in the archive")
    versioned = [n for n in names if re.match(r"libpneumoscope_torch-\d+\.\d+\.so$", n)]
    if E.get("PS_HAVE_TORCH") == "ON":
        check(len(versioned) == 1, "the libtorch backend, named for its libtorch: %s" % versioned)
    check(not any(n.startswith(("libcairo", "libX11", "libpneumoscope_plot")) for n in names),
          "no cairo (plots) in the archive: classifying does not need it")
    env = {k: v for k, v in E.items() if k != "LD_LIBRARY_PATH"}
    outside = []
    for n in names:
        f = os.path.join(lib, n)
        rp = subprocess.run(["readelf", "-d", f], capture_output=True, text=True).stdout
        check("[$ORIGIN]" in rp, n + ": RUNPATH $ORIGIN")
        if n in versioned:  # ldd would list libtorch's own closure: its direct needs, libtorch's aside, are here
            dyn = subprocess.run(["readelf", "-d", f], capture_output=True, text=True).stdout
            outside += ["%s -> %s (not in lib/linux64)" % (n, d) for d in re.findall(r"\(NEEDED\).*\[(.*)\]", dyn)
                        if not GLIBC.match(d) and not d.startswith(("libtorch", "libc10"))
                        and not os.path.exists(os.path.join(lib, d))]
            continue
        out = subprocess.run(["ldd", f], capture_output=True, text=True, env=env).stdout
        for line in out.splitlines():
            m = re.match(r"\s*(\S+)\s*=>\s*(.*?)\s*(\(0x[0-9a-f]+\))?$", line)
            if not m:
                continue
            dep, where = m.group(1), m.group(2)
            if GLIBC.match(dep):
                continue
            if where == "not found" or os.path.dirname(os.path.realpath(where)) != os.path.realpath(lib):
                outside.append("%s -> %s (%s)" % (n, dep, where))
    check(not outside, "every dependency resolves inside lib/linux64 (%d libraries): %s" % (len(names), outside[:5]))
    # ImageJ from the unzipped tree, with no libtorch backend to load
    film = os.path.join(data, "kaggle", "PNEUMONIA", sorted(os.listdir(os.path.join(data, "kaggle", "PNEUMONIA")))[0])
    dcm = os.path.join(data, "dicom", "CR-MONO1-10-chest.dcm")
    out = os.path.join(tmp, "zip-out")
    os.makedirs(out)
    lungs = os.path.join(tmp, "lungs-model.safetensors")  # a lung-ROI model: the overlay draws its box
    p = chk.run([E["PS_PYTHON"], os.path.join(chk.HERE, "make_test_model.py"), lungs, "2", "7", "lungs"])
    check(p.returncode == 0, "make_test_model.py ... lungs " + p.stderr[-300:])
    saved = E.get("PNEUMOSCOPE_TORCH_BACKEND")
    E["PNEUMOSCOPE_TORCH_BACKEND"] = os.path.join(tmp, "no-such-backend.so")
    try:
        split = os.path.join(tmp, "split")
        ps = chk.run([E["PS_CLI"], "split", os.path.join(data, "kaggle"), "-o", split, "--seed", "1"])
        check(ps.returncode == 0, "pneumoscope split for Train Model " + ps.stderr[-200:])
        p = chk.imagej(fiji, "zip_commands.ijm", " ".join([film, dcm, out, lungs, os.path.join(split, "manifest.csv")]))
        train_with_libtorch_field(chk, tmp, fiji, os.path.join(split, "manifest.csv"), versioned)
    finally:
        if saved is None:
            del E["PNEUMOSCOPE_TORCH_BACKEND"]
        else:
            E["PNEUMOSCOPE_TORCH_BACKEND"] = saved
    check("zip_commands: done" in p.stdout, "the macro ran to its end")
    check("Training needs libtorch" in p.stdout + p.stderr and "PNEUMOSCOPE_TORCH_BACKEND" in p.stdout + p.stderr
          and "Train Model ran without libtorch" not in p.stdout,
          "Train Model without libtorch stops the macro and says how to get it")
    ov = open(os.path.join(out, "overlay.txt")).read() if os.path.exists(os.path.join(out, "overlay.txt")) else ""
    check(re.search(r"overlays=[1-9]", ov) is not None, "Grad-CAM Overlay drew an overlay (" + ov.strip() + ")")
    lt = os.path.join(out, "lungs.txt")
    kv = dict(l.split("=", 1) for l in open(lt).read().splitlines() if "=" in l) if os.path.exists(lt) else {}
    names = kv.get("names", "").split(";")
    check("Lung box" in names and "Lung outline" in names and any(n.startswith("Grad-CAM") for n in names),
          "a lung-ROI model's overlay: Grad-CAM, its lung box and the lung outline (%s)" % names)
    # the box equals the CLI's roi for the same model and film (pneumoscope gradcam --json)
    p = chk.run([E["PS_CLI"], "gradcam", "--model", lungs, "--json", film])
    if p.returncode == 0 and kv.get("box"):
        import json
        r = json.loads(p.stdout)["roi"]
        w, h = int(kv["width"]), int(kv["height"])
        want = [round(r[0] * w), round(r[1] * h), round(r[2] * w) - round(r[0] * w), round(r[3] * h) - round(r[1] * h)]
        got = [int(float(v)) for v in kv["box"].split(",")]
        check(all(abs(a - b) <= 1 for a, b in zip(got, want)), "lung box %s = CLI roi %s" % (got, want))
    else:
        check(False, "pneumoscope gradcam --json on the lungs model, and a lung box drawn: " + p.stderr[-200:])
    res = os.path.join(out, "results.csv")
    check(os.path.exists(res), "results table saved")
    if not os.path.exists(res):
        return
    rows = list(csv.DictReader(open(res)))
    check(len(rows) >= 2, "results rows: %d" % len(rows))
    p = chk.run([E["PS_CLI"], "classify", "--csv", "--model", "binary", film, dcm])
    cli = {os.path.basename(r["file"]): r for r in csv.DictReader(p.stdout.splitlines())}
    keys = [(os.path.basename(r["File"]), r["Model"]) for r in rows]
    check(len(set(keys)) == len(keys) == 3, "one row per film and model (Grad-CAM filled in Classify's row): %s" % keys)
    rows = [r for r in rows if r["Model"] == "pneumoscope-binary.safetensors"]
    check(sorted(os.path.basename(r["File"]) for r in rows) == sorted(cli), "the bundled model's rows: %s"
          % [r["File"] for r in rows])
    for r in rows:
        key = os.path.basename(r["File"])
        if key not in cli:
            continue
        a, b = float(r["P_PNEUMONIA"]), float(cli[key]["p_PNEUMONIA"])
        check(abs(a - b) < 1e-4, "%s: P(PNEUMONIA) %.5f in Fiji (no libtorch) = %.5f from the CLI" % (key, a, b))


def train_with_libtorch_field(chk, tmp, fiji, manifest, versioned):
    """Train Model's libtorch field in the unzipped archive (PNEUMOSCOPE_TORCH_BACKEND names nothing)."""
    check = chk.check
    bogus = os.path.join(tmp, "no-libtorch-here")
    os.makedirs(bogus)
    out = os.path.join(tmp, "zip-train-bogus")
    os.makedirs(out)
    p = chk.imagej(fiji, "zip_train.ijm", " ".join(["bogus", manifest, out, bogus]))
    said = p.stdout + p.stderr
    check(p.returncode == 0 and "A fatal error has been detected" not in said,
          "ImageJ lives on (exit %d)" % p.returncode)
    check("cannot load the libtorch backend " + bogus + ": the folder holds neither" in said
          and "Training needs libtorch" in said and "libtorch field" in said
          and "Train Model ran" not in p.stdout,
          "Train Model libtorch=[a folder without libtorch] stops the macro, says why and how to get libtorch")
    debian = "/usr/lib/x86_64-linux-gnu"
    if not versioned or not os.path.exists(os.path.join(debian, "libtorch_cpu.so.1.13")):
        print("note: Debian's libtorch 1.13 or the archive's backend is absent: training from the archive not tried")
        return
    out = os.path.join(tmp, "zip-train")
    os.makedirs(out)
    p = chk.imagej(fiji, "zip_train.ijm", " ".join(["debian", manifest, out, debian]), timeout=420)
    said = p.stdout + p.stderr
    check("zip_train: done" in p.stdout, "Train Model libtorch=[%s] and Evaluate Model ran to the end" % debian)
    check("libtorch 1.13" in said and "from " + debian in said and versioned[0] in said,
          "the Log names the libtorch and the archive's backend it used")
    hist = os.path.join(out, "training.csv")
    rows = list(csv.DictReader(open(hist))) if os.path.exists(hist) else []
    check(len(rows) == 1 and os.path.exists(os.path.join(out, "train", "best.safetensors")),
          "one epoch trained from the archive with Debian's libtorch (%d history rows)" % len(rows))
    ev = os.path.join(out, "evaluation.csv")
    rows = list(csv.DictReader(open(ev))) if os.path.exists(ev) else []
    check(len(rows) == 1 and rows[0].get("N", "0") not in ("", "0")
          and os.path.exists(os.path.join(out, "eval", "metrics.json")),
          "Evaluate Model without the plot module: a row of metrics and metrics.json (%s)" % rows)
    check("zip_train: images=0" in p.stdout and "plots are not available in this install" in said,
          "Evaluate Model shows no plot images and says plots are not available")
    prefs = os.path.join(os.path.dirname(fiji), "home", ".imagej", "IJ_Prefs.txt")
    text = open(prefs).read() if os.path.exists(prefs) else ""
    check("pneumoscope.libtorch=" + debian in text, "the libtorch field is remembered in IJ Prefs (%s)" % prefs)
