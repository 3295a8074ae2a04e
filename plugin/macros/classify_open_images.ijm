// PneumoScope example: classify every open image (the file behind each image when there is one,
// else its pixels through the display range) and add a Grad-CAM overlay to each.
// Results: the "PneumoScope Results" table (label, probabilities, in_distribution / ood_score /
// ood_reason, PatientID, SOPInstanceUID, ViewPosition, model, lung focus); the Log says which films are
// flagged out of distribution. model=binary is the bundled NORMAL/PNEUMONIA model; model=3class the
// NORMAL/BACTERIA/VIRUS one, model=file model_file=[/path/model.safetensors] any other.
ids = newArray(nImages);
for (i = 0; i < nImages; i++) { selectImage(i + 1); ids[i] = getImageID(); }
for (i = 0; i < ids.length; i++) {
  selectImage(ids[i]);
  run("Classify Chest Film...", "model=binary threshold=-1 use_file");
  run("Grad-CAM Overlay...", "model=binary class=auto layer=layer4 opacity=40 lut=viridis use_file");
}
