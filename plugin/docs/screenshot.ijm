// Screenshot of Plugins > PneumoScope > Grad-CAM Overlay for the README (run by make_screenshot.sh
// in a normal, non-batch ImageJ under Xvfb). Argument: "FILM MODEL OUT.png".
args = split(getArgument(), " ");
if (endsWith(toLowerCase(args[0]), ".dcm")) run("Open DICOM (PneumoScope)...", "path=[" + args[0] + "]");
else open(args[0]);
run("Grad-CAM Overlay", "model=[" + args[1] + "] class=auto layer=layer4 opacity=45 lut=viridis use_file");
wait(1500);
run("Capture Image");      // the image window as shown: film + overlay
wait(500);
saveAs("PNG", args[2]);
close("*");
run("Quit");
