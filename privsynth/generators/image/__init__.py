"""The DP image generator: a class-conditional mixture of factor analysers in a public DCT basis."""
