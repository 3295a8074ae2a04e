# Training and evaluation on real films (size 64, tens of films: well under 2 minutes each on 2 cores).
ps_add_test(train SOURCES test_train.c NEEDS torch TIMEOUT 900)
ps_add_test(evaluate SOURCES test_evaluate.c NEEDS torch python TIMEOUT 900)
