"""deepbatch: distributed deep learning on big data with Apache Spark."""

import os as _os

# OpenCV checks every decoder's header against this pixel limit before it allocates, and reads the
# limit once, when cv2 loads; so it is set here, before any deepbatch module imports cv2. It guards
# the formats whose header deepbatch does not read itself (TIFF, JPEG 2000, Radiance HDR); for the
# others quality.max_image_pixels applies first. A value the user sets in the environment wins.
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", "50000000")
# Undecodable inputs are reported as quarantine reasons and record errors; OpenCV's own per-file
# warnings ("PNG input buffer is incomplete") would repeat them on stderr.
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
