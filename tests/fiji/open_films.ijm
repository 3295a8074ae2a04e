// ImageJ side of fiji_imagej (open part). Argument: "LIST OUT" where LIST has lines
// "film<TAB>cli.png" (the CLI's `pneumoscope convert` of the same film). For each film this opens
// it through Plugins > PneumoScope > Open DICOM (PneumoScope)... (display-ready and raw), and
// writes one CSV line to OUT with what ImageJ shows: size, calibration, header fields from the
// Info property, the raw display range, and the largest difference from the CLI's 8-bit PNG
// (opened by ImageJ's own PNG reader) in 1/255 units.
args = split(getArgument(), " ");
lines = split(File.openAsString(args[0]), "\n");
out = "film,width,height,pixel_width,pixel_height,unit,sop_uid,patient_id,view_position,photometric,raw_min,raw_max,max_diff_255\n";
function field(info, key) {
  ls = split(info, "\n");
  for (k = 0; k < ls.length; k++)
    if (startsWith(ls[k], key + ": ")) return substring(ls[k], lengthOf(key) + 2);
  return "";
}
for (i = 0; i < lines.length; i++) {
  f = split(lines[i], "\t");
  film = f[0]; png = f[1];
  run("Open DICOM (PneumoScope)...", "path=[" + film + "]");
  id1 = getImageID();
  info = getMetadata("Info");
  getPixelSize(unit, pw, ph);
  w = getWidth(); h = getHeight();
  run("Multiply...", "value=255");
  open(png);
  run("32-bit");
  id2 = getImageID();
  imageCalculator("Difference create 32-bit", id1, id2);
  getStatistics(area, mean, min, maxdiff);
  close(); selectImage(id2); close(); selectImage(id1); close();
  run("Open DICOM (PneumoScope)...", "path=[" + film + "] raw");
  getMinAndMax(rmin, rmax);
  close();
  out = out + film + "," + w + "," + h + "," + d2s(pw, 9) + "," + d2s(ph, 9) + "," + unit + ","
      + field(info, "SOPInstanceUID") + "," + field(info, "PatientID") + "," + field(info, "ViewPosition") + ","
      + field(info, "PhotometricInterpretation") + "," + d2s(rmin, 6) + "," + d2s(rmax, 6) + "," + d2s(maxdiff, 6) + "\n";
}
File.saveString(out, args[1]);
print("open_films: " + lines.length + " films");
