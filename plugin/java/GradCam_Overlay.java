import ij.IJ;
import ij.ImagePlus;
import ij.gui.GenericDialog;
import ij.plugin.PlugIn;
import pneumoscope.Engine;
import pneumoscope.Keys;
import pneumoscope.ModelChoice;

/**
 * Plugins > PneumoScope > Grad-CAM Overlay: where the model looked. The map is added to the
 * image as an Overlay (ImageRoi, adjustable opacity), optionally shown as a separate 32-bit
 * heatmap with a LUT; the lung focus (share of attention inside the lung fields) goes to
 * "PneumoScope Results".
 * The row also has the film's in_distribution, ood_score and ood_reason (as Classify Chest Film).
 * Macro: run("Grad-CAM Overlay...", "model=binary class=auto layer=layer4 opacity=40 lut=Fire heatmap use_file");
 */
public class GradCam_Overlay implements PlugIn {
  @Override
  public void run(String arg) {
    ImagePlus imp = IJ.getImage();
    if (imp == null) return;
    GenericDialog gd = new GenericDialog(Keys.CMD_GRADCAM);
    ModelChoice.add(gd);
    gd.addStringField(Keys.CLASS, Keys.lastClass, 12);
    gd.addChoice(Keys.LAYER, Keys.LAYERS, Keys.lastLayer);
    gd.addSlider(Keys.OPACITY, 0, 100, Keys.lastOpacity);
    gd.addChoice(Keys.LUT, Keys.LUTS, Keys.lastLut);
    gd.addCheckbox(Keys.HEATMAP, Keys.lastHeatmap);
    gd.addCheckbox(Keys.LUNG_OUTLINE, Keys.lastLungOutline);
    gd.addCheckbox(Keys.USE_FILE, Keys.lastUseFile);
    gd.addMessage(ModelChoice.help() + "\nclass: auto (the predicted class), a class name (PNEUMONIA) or its index\n"
        + "opacity: of the overlay, percent (Image > Overlay > ... or rerun to change)");
    gd.showDialog();
    if (gd.wasCanceled()) return;
    String model = ModelChoice.read(gd);
    Keys.lastClass = gd.getNextString().trim();
    Keys.lastLayer = gd.getNextChoice();
    Keys.lastOpacity = gd.getNextNumber();
    Keys.lastLut = gd.getNextChoice();
    Keys.lastHeatmap = gd.getNextBoolean();
    Keys.lastLungOutline = gd.getNextBoolean();
    Keys.lastUseFile = gd.getNextBoolean();
    int layer = Integer.parseInt(Keys.lastLayer.substring("layer".length()));
    try {
      IJ.showStatus("PneumoScope: Grad-CAM of " + imp.getTitle());
      Engine.CamDisplay d = Engine.gradCam(imp, model, Keys.lastClass, layer, Keys.lastOpacity,
          Keys.lastLut, Keys.lastHeatmap, Keys.lastLungOutline, Keys.lastUseFile);
      if (d.heatmap != null) d.heatmap.show();
      imp.updateAndDraw();
      IJ.showStatus(imp.getTitle() + ": " + d.summary.predicted + ", lung focus "
          + IJ.d2s(d.summary.lungFocus, 2));
    } catch (Exception | OutOfMemoryError e) {
      Engine.fail(Keys.CMD_GRADCAM, e);
    }
  }
}
