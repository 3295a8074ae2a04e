// ImageJ side of fiji_imagej (model part, second run). Argument: "FILM OUT". Classify Chest Film with
// model=3class, the bundled NORMAL/BACTERIA/VIRUS model by name: its row goes to OUT/3class.csv when the
// model is installed; when it is not, the command must stop the macro with a clear message naming the
// file (check_fiji.py tells which case applies).
args = split(getArgument(), " ");
film = args[0]; out = args[1];
open(film);
run("Classify Chest Film...", "model=3class threshold=-1 use_file");
Table.save(out + "/3class.csv", "PneumoScope Results");
print("model_choice: 3class classified");
