#!/usr/bin/env python3
"""fiji_imagej driver: install the Fiji.app layout from the build, run real ImageJ (ij.jar,
-batch, under xvfb-run) on macros that call the PneumoScope menu commands with recorded options,
and compare what ImageJ shows / writes with the CLI (`pneumoscope info`, `convert`, `classify
--csv`) on the same films. Environment from tests/fiji.cmake. Exit 0 ok, 1 failure, 77 skip."""
import csv, json, os, shutil, signal, subprocess, sys, tempfile

E = os.environ
HERE = os.path.dirname(os.path.abspath(__file__))
failures = []


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


def run(cmd, timeout=600):
    """Run cmd; on timeout kill its whole process group (xvfb-run, Xvfb, java) and report it."""
    print("+ " + " ".join(cmd), flush=True)
    p = subprocess.Popen(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        err += "\nTIMEOUT after %ds (killed): %s" % (timeout, " ".join(cmd))
        p.returncode = -9
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def imagej(fiji, macro, arg, timeout=240):
    """Run ImageJ headless-with-display on one macro; returns the process (stdout has print())."""
    home = os.path.join(os.path.dirname(fiji), "home")  # IJ_Prefs.txt stays in the test folder
    os.makedirs(home, exist_ok=True)
    cmd = [E["PS_XVFB_RUN"], "-a", E["PS_JAVA"], "-Xmx2g", "-Djava.awt.headless=false", "-Duser.home=" + home,
           "-Dplugins.dir=" + fiji, "-Dij.dir=" + fiji,
           "-cp", E["PS_IJ_JAR"], "ij.ImageJ", "-batch", os.path.join(HERE, macro), arg]
    p = run(cmd, timeout=timeout)
    sys.stdout.write(p.stdout[-4000:])
    sys.stdout.write(p.stderr[-4000:])
    return p


def install_fiji(tmp):
    """cmake --install the fiji component into tmp/Fiji.app (the documented layout)."""
    prefix = os.path.join(tmp, "prefix")
    app = E.get("PS_FIJI_APP", "Fiji.app")
    if os.path.isabs(app):
        # configured to install into a real Fiji: never touch it from a test, copy the build instead
        fiji = os.path.join(prefix, "Fiji.app")
        os.makedirs(os.path.join(fiji, "plugins"))
        os.makedirs(os.path.join(fiji, "lib", "linux64"))
        shutil.copy(E["PS_PLUGIN_JAR"], os.path.join(fiji, "plugins"))
        for name in ["pneumoscope-binary.safetensors", "pneumoscope-3class.safetensors"]:
            bundled = os.path.join(E["PS_SOURCE_DIR"], "sample_data", "models", name)
            if os.path.exists(bundled):
                os.makedirs(os.path.join(fiji, "models", "pneumoscope"), exist_ok=True)
                shutil.copy(bundled, os.path.join(fiji, "models", "pneumoscope"))
        for f in os.listdir(E["PS_LIB_DIR"]):
            if f.startswith("libpneumoscope"):
                shutil.copy(os.path.join(E["PS_LIB_DIR"], f), os.path.join(fiji, "lib", "linux64"))
        print("note: PS_FIJI_APP is absolute (%s): layout copied, cmake --install not exercised" % app)
    else:
        p = run(["cmake", "--install", E["PS_BINARY_DIR"], "--component", "fiji", "--prefix", prefix])
        check(p.returncode == 0, "cmake --install --component fiji: " + p.stderr.strip()[-300:])
        fiji = os.path.join(prefix, app)
    for rel in ["plugins/PneumoScope_.jar", "lib/linux64/libpneumoscope_jni.so", "lib/linux64/libpneumoscope.so"]:
        check(os.path.exists(os.path.join(fiji, rel)), "Fiji.app/" + rel + " installed")
    return fiji


def test_open(fiji, tmp, data, sample):
    films = sorted(os.path.join(data, "dicom", f) for f in os.listdir(os.path.join(data, "dicom")) if f.endswith(".dcm"))
    films += [os.path.join(data, "png", "nih_00000001_000.png"),
              os.path.join(data, "kaggle", "NORMAL", "IM-0117-0001.jpeg")]
    kag = os.path.join(sample, "films", "kaggle")
    if os.path.isdir(kag):
        for root, _, fs in sorted(os.walk(kag)):
            films += [os.path.join(root, f) for f in sorted(fs) if f.lower().endswith((".jpeg", ".jpg", ".png"))][:1]
    lst = []
    for i, f in enumerate(films):
        png = os.path.join(tmp, "cli%d.png" % i)
        p = run([E["PS_CLI"], "convert", f, png])
        check(p.returncode == 0, "pneumoscope convert " + os.path.basename(f))
        lst.append(f + "\t" + png)
    listfile = os.path.join(tmp, "open.list")
    with open(listfile, "w") as fh:
        fh.write("\n".join(lst))
    out = os.path.join(tmp, "open.csv")
    p = imagej(fiji, "open_films.ijm", listfile + " " + out)
    check(p.returncode == 0 and os.path.exists(out), "ImageJ ran open_films.ijm")
    if not os.path.exists(out):
        return
    p = run([E["PS_CLI"], "info"] + films)
    check(p.returncode == 0, "pneumoscope info")
    info = {}
    for line in p.stdout.splitlines():
        j = json.loads(line)
        info[j["file"]] = j
    rows = list(csv.DictReader(open(out)))
    check(len(rows) == len(films), "one ImageJ row per film (%d)" % len(rows))
    for r in rows:
        j = info[r["film"]]
        name = os.path.basename(r["film"])
        check(int(r["width"]) == j["width"] and int(r["height"]) == j["height"], name + ": size as pneumoscope info")
        sp = j["pixel_spacing"]
        if sp:
            check(r["unit"] == "mm" and abs(float(r["pixel_width"]) - sp[1]) < 1e-6
                  and abs(float(r["pixel_height"]) - sp[0]) < 1e-6,
                  name + ": calibration %s %s %s = pixel spacing %s" % (r["pixel_width"], r["pixel_height"], r["unit"], sp))
        else:
            check(r["unit"] in ("pixel", "pixels") and float(r["pixel_width"]) == 1, name + ": uncalibrated (no spacing)")
        for k, jk in [("sop_uid", "sop_uid"), ("patient_id", "patient_id"), ("view_position", "view_position"),
                      ("photometric", "photometric")]:
            check(r[k] == j[jk], name + ": Info %s %r = info %r" % (k, r[k], j[jk]))
        check(float(r["max_diff_255"]) <= 0.5 + 1e-3,
              name + ": pixels within 0.5/255 of the CLI's PNG (max %s)" % r["max_diff_255"])
        if j["format"] == "dicom" and j["window_width"] and j["window_width"] > 0:
            lo = j["window_center"] - j["window_width"] / 2
            hi = j["window_center"] + j["window_width"] / 2
            check(abs(float(r["raw_min"]) - lo) < 1e-3 and abs(float(r["raw_max"]) - hi) < 1e-3,
                  name + ": raw display range %s..%s = VOI window %g..%g" % (r["raw_min"], r["raw_max"], lo, hi))


def main():
    for k in ["PS_XVFB_RUN", "PS_JAVA", "PS_IJ_JAR"]:
        if not E.get(k) or not os.path.exists(E[k]):
            print("SKIP fiji_imagej: %s not found (%r); apt-get install xvfb openjdk-17-jdk-headless imagej" % (k, E.get(k)))
            return 77
    data = E["PS_SHARED_DATA"]
    sample = os.path.join(E["PS_SOURCE_DIR"], "sample_data")
    part = sys.argv[1] if len(sys.argv) > 1 else "all"
    if part not in ("all", "open", "model", "train", "zip"):
        print("usage: check_fiji.py [all|open|model|train|zip]")
        return 2
    if part in ("model", "train") and E.get("PS_HAVE_TORCH") != "ON":
        print("SKIP fiji_imagej_%s: built without libtorch (fiji_bindings checks the refusal)" % part)
        return 77
    tmp = tempfile.mkdtemp(prefix="ps-fiji-")
    try:
        if part == "zip":  # the release archive, not the install
            sys.path.insert(0, HERE)
            import zip_check
            zip_check.run_zip(sys.modules[__name__], tmp, data)
            part = "none"
        fiji = install_fiji(tmp) if part != "none" else None
        if part in ("all", "open"):
            test_open(fiji, tmp, data, sample)
        sys.path.insert(0, HERE)
        import model_commands
        if part in ("all", "model"):
            model_commands.run_all(sys.modules[__name__], fiji, tmp, data, sample)
        if part in ("all", "train"):
            model_commands.train_eval(sys.modules[__name__], fiji, tmp, data)
    finally:
        if failures or E.get("PS_KEEP_TMP"):
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
