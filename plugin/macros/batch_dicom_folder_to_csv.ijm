// PneumoScope example: classify every film of a folder (DICOM with or without extension,
// JPEG/JPEG-LS/RLE compressed too, PNG, JPEG; recursively) and write one CSV.
// Films that cannot be read are rows with their error and are listed in the Log; Esc cancels.
// The CSV has in_distribution (true / false / empty when the model cannot tell), ood_score and
// ood_reason per film: films flagged out of distribution keep their label and are listed in the Log.
// Run headless:  ImageJ-linux64 --headless -batch batch_dicom_folder_to_csv.ijm "/data/dicom /tmp/out.csv"
args = split(getArgument(), " ");
if (args.length < 2) {
  folder = getDirectory("Folder of chest films");
  csv = File.getDirectory(folder) + File.getName(folder) + "-pneumoscope.csv";
} else {
  folder = args[0];
  csv = args[1];
}
// model=[] uses the default model (Train Model... set_default, $PNEUMOSCOPE_MODEL or the bundled binary one);
// model=binary / model=3class name the bundled NORMAL/PNEUMONIA and NORMAL/BACTERIA/VIRUS models, and
// model=file model_file=[/runs/a/best.safetensors] a model file. threshold=-1 keeps the model's own threshold.
run("Batch Classify Folder...", "folder=[" + folder + "] recursive csv=[" + csv + "] model=[] threshold=-1");
print("PneumoScope: wrote " + csv);
