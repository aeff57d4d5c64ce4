"""The reader: an extractive QA model trained here (train.py), exported to ONNX (export.py) and run offline
(onnx_reader.py) to score passages and find answer spans."""
