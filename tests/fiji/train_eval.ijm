// ImageJ side of fiji_imagej (training part). Argument: "MANIFEST RUNDIR EVALDIR FILM OUT".
// Train Model... (tiny smoke run storing the patients' ages 1-5, made the default model), Evaluate Model... with model=[] (so the
// new default is what gets evaluated), then Classify Chest Film with model=[]; tables to OUT; then
// Train Model... fine-tuning the bundled binary model (init=binary finetune) into RUNDIR-ft.
args = split(getArgument(), " ");
manifest = args[0]; rundir = args[1]; evaldir = args[2]; film = args[3]; out = args[4];
run("Train Model...", "manifest=[" + manifest + "] outdir=[" + rundir + "] task=binary epochs=1 lr=0 batch=8 patience=0 size=64 seed=1 threads=2 device=cpu init=[] limit=0 patient_ages=1-5 augment balance=default set_default");
Table.save(out + "/training.csv", "PneumoScope Training");
run("Evaluate Model...", "model=[] manifest=[" + manifest + "] split=test outdir=[" + evaldir + "] threshold=-1 device=cpu limit=0");
Table.save(out + "/evaluation.csv", "PneumoScope Evaluation");
titles = "";
for (i = 1; i <= nImages; i++) { selectImage(i); titles = titles + getTitle() + "\n"; }
File.saveString(titles, out + "/eval_images.txt");
close("*");
open(film);
run("Classify Chest Film...", "model=[] threshold=-1 use_file");
Table.save(out + "/default_classify.csv", "PneumoScope Results");
// fine-tuning the bundled binary model by its short name, its classifier kept (lr ~0: it stays)
run("Train Model...", "manifest=[" + manifest + "] outdir=[" + rundir + "-ft] task=binary epochs=1 lr=0.000000001 batch=8 patience=0 size=64 seed=1 threads=2 device=cpu init=binary finetune limit=0 balance=default");
print("train_eval: done");
