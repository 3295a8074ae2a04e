// PneumoScope example: train a binary model on a split manifest (pneumoscope split DATA OUT
// writes one), make it the default, and evaluate it on the test split. Training needs libtorch: when
// Fiji does not find it, add libtorch=[/path/to/torch/lib] (Train Model's libtorch field: PyTorch's
// torch/lib folder, Debian's /usr/lib/x86_64-linux-gnu or libpneumoscope_torch.so; remembered once it works).
// patient_ages=[1-5]: store the training patients' ages (years), so DICOMs of other ages are flagged.
manifest = File.openDialog("Split manifest (manifest.csv)");
out = getDirectory("Output folder for the run");
run("Train Model...", "manifest=[" + manifest + "] outdir=[" + out + "] task=binary epochs=0 lr=0 batch=0 patience=0 size=224 seed=1 threads=0 device=auto init=[] limit=0 patient_ages=[] augment balance=default set_default");
run("Evaluate Model...", "model=file model_file=[" + out + "best.safetensors] manifest=[" + manifest + "] split=test outdir=[" + out + "eval] threshold=-1 device=auto limit=0");
