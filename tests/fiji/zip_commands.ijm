// ImageJ side of fiji_imagej_zip: the release archive unzipped into a bare Fiji.app, run with
// PNEUMOSCOPE_TORCH_BACKEND naming nothing (a Fiji without libtorch). Argument: "FILM DICOM OUT".
// Classifies a JPEG film and a DICOM with the bundled binary model and draws a layer4 Grad-CAM
// overlay; leaves results.csv (the "PneumoScope Results" table) and overlay.txt in OUT.
args = split(getArgument(), " ");
film = args[0]; dcm = args[1]; out = args[2];
open(film);
id = getImageID();
run("Classify Chest Film...", "model=binary threshold=-1 use_file");
run("Grad-CAM Overlay...", "model=binary class=auto layer=layer4 opacity=40 lut=viridis use_file");
selectImage(id);
File.saveString("overlays=" + Overlay.size + "\n", out + "/overlay.txt");
close("*");
run("Open DICOM (PneumoScope)...", "path=[" + dcm + "]");
run("Classify Chest Film...", "model=binary threshold=-1 use_file");
close("*");
Table.save(out + "/results.csv", "PneumoScope Results");
print("zip_commands: done");
