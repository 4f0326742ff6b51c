from bench.redaction.run import main

main()
