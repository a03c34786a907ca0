"""The shipped data: demonstration files (*.hdf5), pretrained policies and planners
(pretrained/*.safetensors) and the scripts that remake them. Installed as the data package
``dp_agent.demos``; the code that reads and writes these files is ``dp_agent.data``."""
