"""Personal information, below both the generators and the audit: detection, placeholders, masking, surrogates.

- :mod:`privsynth.pii.engine`: the offline Presidio scanner (:class:`PiiScanner`) and its :class:`Detection` spans;
- :mod:`privsynth.pii.recognizers` / :mod:`privsynth.pii.nlp`: recognizers Presidio lacks, the offline NLP engine;
- :mod:`privsynth.pii.presidio`: Presidio itself, imported without the Hugging Face pipeline it would load;
- :mod:`privsynth.pii.placeholders`: a record's own identity and detected spans as typed placeholders (training
  text), the record's own identity alone (audit distances), and filling placeholders at sampling;
- :mod:`privsynth.pii.surrogates`: fake identities for synthetic records.

Generators use it to keep identifiers out of training; the audit uses it to find them in any synthetic corpus.
Neither depends on the other.
"""
