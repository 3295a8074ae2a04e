"""fiji_imagej_zip (imported by check_fiji.py): the release archive (plugin/fiji_bundle.sh zip, what
`cmake --build build --target fiji-zip` runs) unzipped into an empty folder is a self-contained
Fiji.app: every library in lib/linux64 resolves its dependencies inside lib/linux64 (ldd with no
LD_LIBRARY_PATH; glibc's own libraries aside) with RUNPATH $ORIGIN, and no libtorch is in it. Real
ImageJ then runs zip_commands.ijm from that tree with PNEUMOSCOPE_TORCH_BACKEND naming nothing:
Classify Chest Film (a JPEG and a DICOM) and a layer4 Grad-CAM Overlay work, and the table's
probabilities equal `pneumoscope classify --csv --model binary` on the same films."""
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
    check(not any(n.startswith(("libtorch", "libc10", "libpneumoscope_torch")) for n in names),
          "no libtorch in the archive")
    env = {k: v for k, v in E.items() if k != "LD_LIBRARY_PATH"}
    outside = []
    for n in names:
        f = os.path.join(lib, n)
        rp = subprocess.run(["readelf", "-d", f], capture_output=True, text=True).stdout
        check("[$ORIGIN]" in rp, n + ": RUNPATH $ORIGIN")
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
    saved = E.get("PNEUMOSCOPE_TORCH_BACKEND")
    E["PNEUMOSCOPE_TORCH_BACKEND"] = os.path.join(tmp, "no-such-backend.so")
    try:
        p = chk.imagej(fiji, "zip_commands.ijm", " ".join([film, dcm, out]))
    finally:
        if saved is None:
            del E["PNEUMOSCOPE_TORCH_BACKEND"]
        else:
            E["PNEUMOSCOPE_TORCH_BACKEND"] = saved
    check("zip_commands: done" in p.stdout, "the macro ran to its end")
    ov = open(os.path.join(out, "overlay.txt")).read() if os.path.exists(os.path.join(out, "overlay.txt")) else ""
    check(re.search(r"overlays=[1-9]", ov) is not None, "Grad-CAM Overlay drew an overlay (" + ov.strip() + ")")
    res = os.path.join(out, "results.csv")
    check(os.path.exists(res), "results table saved")
    if not os.path.exists(res):
        return
    rows = list(csv.DictReader(open(res)))
    check(len(rows) >= 2, "results rows: %d" % len(rows))
    p = chk.run([E["PS_CLI"], "classify", "--csv", "--model", "binary", film, dcm])
    cli = {os.path.basename(r["file"]): r for r in csv.DictReader(p.stdout.splitlines())}
    check(sorted(os.path.basename(r["File"]) for r in rows) == sorted(cli), "one row per film: %s" % [r["File"] for r in rows])
    for r in rows:
        key = os.path.basename(r["File"])
        if key not in cli:
            continue
        a, b = float(r["P_PNEUMONIA"]), float(cli[key]["p_PNEUMONIA"])
        check(abs(a - b) < 1e-4, "%s: P(PNEUMONIA) %.5f in Fiji (no libtorch) = %.5f from the CLI" % (key, a, b))
