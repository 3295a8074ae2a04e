// Screenshots for the README (run by make_screenshot.sh in a normal, non-batch ImageJ under Xvfb).
// Argument, tab-separated: "FILM<TAB>MODEL<TAB>OUTDIR<TAB>ADULT_FILM". MODEL is binary or 3class (a
// bundled model by name) or a .safetensors path (model=file model_file=[...]).
//   OUTDIR/gradcam-overlay.png: Plugins > PneumoScope > Grad-CAM Overlay on FILM (the image window
//     as shown, Image > Stacks... > Capture Image).
//   OUTDIR/results-table.png: the "PneumoScope Results" table after Classify Chest Film on FILM (a
//     pediatric film, in distribution) and ADULT_FILM (an adult film the model flags out of
//     distribution): the table window cut out of Plugins > Utilities > Capture Screen.
args = split(getArgument(), "\t");
film = args[0]; model = args[1]; out = args[2]; adult = args[3];
if (model == "binary" || model == "3class") m = "model=" + model;
else m = "model=file model_file=[" + model + "]";

function openFilm(path) {
  if (endsWith(toLowerCase(path), ".dcm")) run("Open DICOM (PneumoScope)...", "path=[" + path + "]");
  else open(path);
}

// ---- the Grad-CAM overlay ----------------------------------------------------------------------
openFilm(film);
run("Grad-CAM Overlay...", m + " class=auto layer=layer4 opacity=45 lut=viridis use_file");
wait(1500);
run("Capture Image");      // the image window as shown: film + overlay
wait(500);
saveAs("PNG", out + "/gradcam-overlay.png");
close("*");

// ---- the results table: a pediatric film and an adult film ---------------------------------------
if (isOpen("PneumoScope Results")) { selectWindow("PneumoScope Results"); run("Close"); }
openFilm(film);
run("Classify Chest Film...", m + " threshold=-1 use_file");
close();
openFilm(adult);
run("Classify Chest Film...", m + " threshold=-1 use_file");
close();
x = 0; y = 160; w = 1270; h = 130;
Table.setLocationAndSize(x, y, w, h, "PneumoScope Results");
selectWindow("PneumoScope Results");
wait(1500);
run("Capture Screen");
makeRectangle(x, y, w, h);
run("Crop");
saveAs("PNG", out + "/results-table.png");
close("*");
run("Quit");
