// ImageJ side of fiji_imagej (model part). Argument: "LIST MODEL OUT SAMPLE MIXED ADULT LEGACY" where LIST
// has one film per line. Calls every model command the way a recorded macro does and leaves files in OUT
// for check_fiji.py: results.csv (the "PneumoScope Results" table), heatmap.tif + overlay.txt
// (Grad-CAM of the first film), batch.csv (Batch Classify Folder over SAMPLE), batch-mixed.csv
// (over MIXED: good, extensionless, nested and broken files), default.csv (model=[]), binary.csv
// (model=binary on the first film), binary-adult.csv (model=binary on ADULT, an adult film the
// bundled model's detector flags), legacy.csv (LEGACY, a model without an OOD detector, on the first
// film). Both model syntaxes are used: model=[path] (older macros) and model=file model_file=[path].
// About / Model Info logs the test model, the bundled binary model and LEGACY. Last, after
// "model_commands: done", a missing model file, which must stop the macro with a clear message (the
// JVM lives on).
args = split(getArgument(), " ");
films = split(File.openAsString(args[0]), "\n");
model = args[1]; out = args[2]; sample = args[3]; mixed = args[4]; adult = args[5]; legacy = args[6];
opts = "model=[" + model + "] threshold=-1 use_file";
for (i = 0; i < films.length; i++) {
  f = films[i];
  if (endsWith(toLowerCase(f), ".dcm"))
    run("Open DICOM (PneumoScope)...", "path=[" + f + "]");   // compressed DICOM ImageJ refuses
  else
    open(f);                                                  // ImageJ's own reader: file behind it
  run("Classify Chest Film...", opts);
  if (i == 0) {
    // the same film without a file behind it: its pixels through the display range
    run("Duplicate...", "title=pixels-copy");
    run("Classify Chest Film...", "model=[" + model + "] threshold=-1");
    close();
  }
  close();
}
// Grad-CAM of the first film, overlay + heatmap with the viridis LUT
f = films[0];
if (endsWith(toLowerCase(f), ".dcm")) run("Open DICOM (PneumoScope)...", "path=[" + f + "]"); else open(f);
id = getImageID();
run("Grad-CAM Overlay...", "model=file model_file=[" + model + "] class=auto layer=layer4 opacity=40 lut=viridis heatmap use_file");
selectImage(id);
n = Overlay.size;
Overlay.activateSelection(0);
getSelectionBounds(x, y, w, h);
ovname = Roi.getName;
File.saveString("overlays=" + n + "\nname=" + ovname + "\nbounds=" + x + "," + y + "," + w + "," + h + "\nwidth=" + getWidth() + "\nheight=" + getHeight() + "\n", out + "/overlay.txt");
selectImage("Grad-CAM of " + getTitle());
saveAs("Tiff", out + "/heatmap.tif");
// explicit class + another layer (Grad-CAM proper, through autograd)
selectImage(id);
run("Grad-CAM Overlay...", "model=[" + model + "] class=PNEUMONIA layer=layer3 opacity=60 lut=Fire use_file");
close("*");
Table.save(out + "/results.csv", "PneumoScope Results");
run("Batch Classify Folder...", "folder=[" + sample + "] recursive csv=[" + out + "/batch.csv] model=[" + model + "] threshold=-1");
// a folder with an extensionless DICOM, a nested film, a truncated JPEG and a text file
run("Batch Classify Folder...", "folder=[" + mixed + "] recursive csv=[" + out + "/batch-mixed.csv] model=file model_file=[" + model + "] threshold=-1");
// model=[]: the default model (no Prefs in the test's home: ps_model_default_path, the bundled one)
f = films[0];
if (endsWith(toLowerCase(f), ".dcm")) run("Open DICOM (PneumoScope)...", "path=[" + f + "]"); else open(f);
run("Classify Chest Film...", "model=[] threshold=-1 use_file");
close();
Table.save(out + "/default.csv", "PneumoScope Results");
// model=binary: the bundled NORMAL/PNEUMONIA model by name (Fiji.app/models/pneumoscope)
f = films[0];
if (endsWith(toLowerCase(f), ".dcm")) run("Open DICOM (PneumoScope)...", "path=[" + f + "]"); else open(f);
run("Classify Chest Film...", "model=binary threshold=-1 use_file");
Table.save(out + "/binary.csv", "PneumoScope Results");
close();
// model=binary on an adult film: out of distribution for the pediatric bundled model, label kept
open(adult);
run("Classify Chest Film...", "model=binary threshold=-1 use_file");
Table.save(out + "/binary-adult.csv", "PneumoScope Results");
close();
// a model without an OOD detector (the 96 px legacy fixture): in_distribution unknown
f = films[0];
if (endsWith(toLowerCase(f), ".dcm")) run("Open DICOM (PneumoScope)...", "path=[" + f + "]"); else open(f);
run("Classify Chest Film...", "model=file model_file=[" + legacy + "] threshold=-1 use_file");
Table.save(out + "/legacy.csv", "PneumoScope Results");
run("About PneumoScope / Model Info", "model=binary");
run("About PneumoScope / Model Info", "model=file model_file=[" + legacy + "]");
run("About PneumoScope / Model Info", "model=file model_file=[" + model + "]");
File.saveString(getInfo("log"), out + "/log.txt");
print("model_commands: done");
// a model file that does not exist: a clear message in the Log, the macro stops here
run("Classify Chest Film...", "model=file model_file=[" + out + "/no-such-model.safetensors] threshold=-1 use_file");
print("model_commands: a missing model did not stop the macro");
