# DICOM reader tests: real films, DCMTK-tool variants, pydicom references, malformed catalogue.
ps_add_test(dicom SOURCES test_dicom.c NEEDS dicom python TIMEOUT 300)
