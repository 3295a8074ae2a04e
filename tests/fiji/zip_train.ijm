// ImageJ side of fiji_imagej_zip, training part: the release archive unzipped into a bare Fiji.app,
// PNEUMOSCOPE_TORCH_BACKEND naming nothing, so the libtorch field alone says where libtorch is.
// Argument: "MODE MANIFEST OUT LIBTORCH".
//   bogus:  Train Model with libtorch=[a folder without libtorch] must stop the macro with a message
//           that says what is wrong and how to get libtorch (the line after it never prints).
//   debian: Train Model with libtorch=[Debian's libtorch folder] trains (the archive's
//           libpneumoscope_torch-1.13.so), then Evaluate Model on it works without the plot module;
//           the tables go to OUT.
args = split(getArgument(), " ");
mode = args[0]; manifest = args[1]; out = args[2]; libtorch = args[3];
run("Train Model...", "manifest=[" + manifest + "] outdir=[" + out + "/train] task=binary epochs=1 lr=0 batch=8 patience=0 size=64 seed=1 threads=2 device=cpu init=[] limit=4 augment balance=default libtorch=[" + libtorch + "]");
print("zip_train: Train Model ran");
Table.save(out + "/training.csv", "PneumoScope Training");
run("Evaluate Model...", "model=file model_file=[" + out + "/train/best.safetensors] manifest=[" + manifest + "] split=test outdir=[" + out + "/eval] threshold=-1 device=cpu limit=8");
Table.save(out + "/evaluation.csv", "PneumoScope Evaluation");
print("zip_train: images=" + nImages);
print("zip_train: done");
