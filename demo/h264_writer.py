"""
Write drawn frames to an H.264 mp4 that browsers play, with PyAV (FFmpeg's libx264, carried by
PyAV's wheels). OpenCV's wheels write MPEG-4 part 2 ("mp4v", what demo/demo.py writes), which
browsers do not play, and have no H.264 encoder.
"""
from fractions import Fraction

import numpy as np

__all__ = ["H264Writer"]


class H264Writer:
    """
    ``with H264Writer(path, fps) as writer: writer.write(frame_bgr)``: the video's size is that
    of the first frame, rounded up to even numbers (H.264 in 4:2:0 needs them) by repeating
    the last row or column.

    Args:
        path: the mp4 file to write.
        fps: frames per second.
        crf: libx264's constant rate factor (quality: 0 lossless .. 51; 23 is its default).
    """

    def __init__(self, path, fps, crf=23):
        import av  # the app's optional dependency (pip install -e ".[app]")

        self._container = av.open(path, mode="w")
        self._stream = self._container.add_stream(
            "libx264", rate=Fraction(fps).limit_denominator(1001),
            options={"preset": "veryfast", "crf": str(crf)},
        )
        self._stream.pix_fmt = "yuv420p"
        self._video_frame = av.VideoFrame
        self.frames = 0

    def write(self, frame_bgr):
        """Append one (H, W, 3) uint8 BGR frame."""
        height, width = frame_bgr.shape[:2]
        if self.frames == 0:
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
        pad = ((0, self._stream.height - height), (0, self._stream.width - width), (0, 0))
        frame = np.pad(frame_bgr, pad, mode="edge") if any(p[1] for p in pad[:2]) else frame_bgr
        video_frame = self._video_frame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
        self._container.mux(self._stream.encode(video_frame))
        self.frames += 1

    def close(self):
        """Flush the encoder and close the file."""
        if self.frames:
            self._container.mux(self._stream.encode())
        self._container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
