from lightning_adapt_lm_eval.cli import main

main()
