"""A user's own model code, as a team would write it for driftloop: a record predictor
(``predictor.py``) and the trainer that fits it (``trainer.py``). Only driftloop's public
contract is used; the demo installs this folder into its project as the plug-in package
``segment_model`` (its trainer under the entry point ``driftloop.trainers: segment``)."""
