ps_add_test(core SOURCES test_core.c)
