// PneumoScope example: open a DICOM ImageJ's own reader refuses (JPEG, JPEG-LS, RLE compressed)
// as a calibrated 32-bit image. raw keeps modality values (the file's VOI window becomes the
// display range); without raw the film is display-ready [0, 1].
path = File.openDialog("DICOM film");
run("Open DICOM (PneumoScope)...", "path=[" + path + "] raw");
print(getMetadata("Info"));
