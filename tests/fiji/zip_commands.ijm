// ImageJ side of fiji_imagej_zip: the release archive unzipped into a bare Fiji.app, run with
// PNEUMOSCOPE_TORCH_BACKEND naming nothing (a Fiji without libtorch). Argument: "FILM DICOM OUT
// LUNGS_MODEL". Classifies a JPEG film and a DICOM with the bundled binary model and draws a layer4
// Grad-CAM overlay; then a lung-ROI model's overlay with the lung outline (lungs.txt: the overlay's
// names and the lung box's bounds); leaves results.csv (the "PneumoScope Results" table) and
// overlay.txt in OUT. Last, Train Model with MANIFEST: without libtorch it must stop the macro
// with a message that says how to get it.
args = split(getArgument(), " ");
film = args[0]; dcm = args[1]; out = args[2]; lungs = args[3]; manifest = args[4];
open(film);
id = getImageID();
run("Classify Chest Film...", "model=binary threshold=-1 use_file");
run("Grad-CAM Overlay...", "model=binary class=auto layer=layer4 opacity=40 lut=viridis use_file");
selectImage(id);
File.saveString("overlays=" + Overlay.size + "\n", out + "/overlay.txt");
run("Grad-CAM Overlay...", "model=file model_file=[" + lungs + "] class=auto layer=layer4 opacity=40 lut=viridis lung_outline use_file");
selectImage(id);
names = "";
box = "";
for (i = 0; i < Overlay.size; i++) {
  Overlay.activateSelection(i);
  names = names + Roi.getName + ";";
  if (Roi.getName == "Lung box") { getSelectionBounds(x, y, w, h); box = "" + x + "," + y + "," + w + "," + h; }
}
File.saveString("names=" + names + "\nbox=" + box + "\nwidth=" + getWidth() + "\nheight=" + getHeight() + "\n", out + "/lungs.txt");
close("*");
run("Open DICOM (PneumoScope)...", "path=[" + dcm + "]");
run("Classify Chest Film...", "model=binary threshold=-1 use_file");
close("*");
Table.save(out + "/results.csv", "PneumoScope Results");
print("zip_commands: done");
run("Train Model...", "manifest=[" + manifest + "] outdir=[" + out + "/train] task=binary epochs=1 lr=0 batch=8 patience=0 size=64 seed=1 threads=2 device=cpu init=[] limit=4 augment balance=default");
print("zip_commands: Train Model ran without libtorch");
