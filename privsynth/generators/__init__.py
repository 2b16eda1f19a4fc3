"""DP generators: one per modality, registered by name, trained with Opacus DP-SGD under the ledger."""
