// PneumoScope example: classify every open image (the file behind each image when there is one,
// else its pixels through the display range) and add a Grad-CAM overlay to each.
// Results: the "PneumoScope Results" table (label, probabilities, PatientID, SOPInstanceUID,
// ViewPosition, model, lung focus).
ids = newArray(nImages);
for (i = 0; i < nImages; i++) { selectImage(i + 1); ids[i] = getImageID(); }
for (i = 0; i < ids.length; i++) {
  selectImage(ids[i]);
  run("Classify Chest Film", "model=[] threshold=-1 use_file");
  run("Grad-CAM Overlay", "model=[] class=auto layer=layer4 opacity=40 lut=viridis use_file");
}
