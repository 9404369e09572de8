"""
Mask2Former web app: segment an uploaded image or video in the browser.

    python demo/app.py --config-file configs/shapes/maskformer2_R18_shapes.yaml \
        --opts MODEL.WEIGHTS output/main_job/model_final.pth
    python demo/app.py    # after tools/main_job.py: serves output/main_job/model_final.pth

It listens on 127.0.0.1:7860 (``--host``, ``--port``) and prints its address. MODEL.WEIGHTS
may name a checkpoint or a model exported by tools/deploy/export_model.py (.onnx, .ts); with a
video config (VideoMaskFormer) the app tracks the objects of videos. Built on Gradio (its HTTP
API serves the same calls, e.g. with gradio_client); the prediction itself is the demo's
(demo/app_jobs.py). One job runs at a time, the others wait in a queue. Everything it writes
(uploads, results, examples, temporary files) goes under ``--output``.
"""
import argparse
import logging
import os
import sys
import tempfile

# Gradio would report usage and look for updates on the internet: the app works offline.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "demo_video"))

logger = logging.getLogger("mask2former.app")

MAIN_JOB_OUTPUT = os.path.join("output", "main_job")
SHAPES_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "configs", "shapes", "maskformer2_R18_shapes.yaml")
TABLE_HEADERS = ["class", "score", "area %"]


def get_parser():
    parser = argparse.ArgumentParser(description="Mask2Former web app")
    parser.add_argument("--config-file", metavar="FILE",
                        help="model config (default, after tools/main_job.py: its model)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0: every network interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    parser.add_argument("--output", default=os.path.join("output", "app"),
                        help="folder for uploads, results and temporary files")
    parser.add_argument("--confidence-threshold", type=float, default=0.5,
                        help="initial minimum score of shown instances and tracks")
    parser.add_argument("--max-megapixels", type=float, default=100.0,
                        help="largest image or video frame taken, in megapixels")
    parser.add_argument("--max-file-mb", type=float, default=500.0,
                        help="largest upload taken, in MiB")
    parser.add_argument("--max-video-frames", type=int, default=3000,
                        help="longest video taken, in frames")
    parser.add_argument("--window", type=int, default=30,
                        help="frames a video model sees at once (demo_video/demo.py)")
    parser.add_argument("--overlap", type=int, default=5,
                        help="frames shared by consecutive windows of a video model")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER,
                        help="config options as KEY VALUE pairs, e.g. MODEL.WEIGHTS w.pkl")
    return parser


def load_config(config_file, opts):
    """
    The model's config: ``config_file`` with ``opts``. Without a config file, or without
    MODEL.WEIGHTS, the main job's model (tools/main_job.py) when it is there.

    Returns:
        (config, one line saying which model it is).
    """
    from mask2former.engine import apply_cuda_settings
    from mask2former_video import get_maskformer2_video_cfg  # image keys and the video ones

    main_job_weights = os.path.join(MAIN_JOB_OUTPUT, "model_final.pth")
    has_main_job = os.path.isfile(main_job_weights)
    if config_file is None:
        if not has_main_job:
            raise SystemExit(
                "No model given: start the app with --config-file X.yaml --opts MODEL.WEIGHTS "
                f"w.pkl, or train the main job's model first ({main_job_weights}: python "
                "tools/main_job.py)"
            )
        main_job_config = os.path.join(MAIN_JOB_OUTPUT, "config.yaml")
        config_file = main_job_config if os.path.isfile(main_job_config) else SHAPES_CONFIG
        if "MODEL.WEIGHTS" not in opts[::2]:
            opts = ["MODEL.WEIGHTS", main_job_weights] + list(opts)
    cfg = get_maskformer2_video_cfg(config_file, opts)
    if not cfg.MODEL.WEIGHTS:
        if not has_main_job:
            raise SystemExit(
                f"{config_file} names no weights: add --opts MODEL.WEIGHTS w.pkl (a checkpoint "
                "or an exported model.onnx / model.ts)"
            )
        logger.info(f"No MODEL.WEIGHTS given: using the main job's model {main_job_weights}")
        cfg.MODEL.WEIGHTS = main_job_weights
    apply_cuda_settings(cfg)
    return cfg, f"{os.path.basename(cfg.MODEL.WEIGHTS)} ({config_file})"


def pass_files_unread(image_input):
    """
    ``image_input`` (a ``gr.Image``) hands the uploaded file's path on unread: the app reads it
    as demo.py does and says what is wrong with a file that is not an image, where ``gr.Image``
    would fail on it with Pillow's error. (An instance attribute: a subclass of a Gradio
    component makes Gradio write a type stub beside this file.)
    """
    read_by_gradio = image_input.preprocess

    def preprocess(payload):
        if payload is None or not payload.path or (payload.url or "").startswith("data:"):
            return read_by_gradio(payload)
        return payload.path

    image_input.preprocess = preprocess
    return image_input


def build_app(jobs, title, confidence_threshold, examples_dir):
    """The Gradio Blocks of the app on ``jobs`` (:class:`SegmentationJobs`)."""
    import gradio as gr
    from app_jobs import UploadError, example_inputs

    class_names = jobs.class_names()
    example_images, example_clip = example_inputs(examples_dir)

    def fail(error):
        """The message shown for ``error`` (never a stack trace; the server logs those)."""
        if isinstance(error, UploadError):
            logger.warning(f"Refused an upload: {error}")
            return gr.Error(str(error), title="Cannot segment this file", duration=None,
                            print_exception=False)
        logger.exception("Job failed")
        return gr.Error(f"The model failed on this file ({type(error).__name__}); the server's "
                        "log has the details", title="Segmentation failed", duration=None,
                        print_exception=False)

    def segment_image(path, task, threshold):
        if not path:
            return None, [], gr.update(choices=[], value=[]), None, "", None
        try:
            result = jobs.segment_image(path, task, threshold)
        except Exception as error:
            raise fail(error) from None
        for note in result.notes:
            gr.Info(note)
        image_area = result.image_pixels
        rows = [[class_names[s["class_id"]],
                 None if s["score"] is None else round(s["score"], 3),
                 round(100 * s["area"] / image_area, 2)] for s in result.segments]
        present = sorted({s["class_id"] for s in result.segments})
        choices = [(class_names[c], c) for c in present]
        return (result.overlay, rows, gr.update(choices=choices, value=present), result.files,
                "  \n".join(result.notes), result)

    def segment_changed_input(path, task, threshold, last):
        """
        An input changed: segment the image, unless ``last`` (the result shown) already is
        its result. Gradio's page reports one upload as two changes, one after the other: the
        second would segment the image again, and make the next job wait for it.
        """
        if last is not None and (last.source, last.task, last.confidence_threshold) == (
                path, task, threshold):
            return gr.skip()
        return segment_image(path, task, threshold)

    def show_classes(shown, threshold, result):
        if result is None:
            return None
        hidden = sorted({s["class_id"] for s in result.segments} - set(shown or []))
        if not hidden:
            return result.overlay
        try:
            return jobs.redraw(result, hidden, threshold)
        except Exception as error:
            raise fail(error) from None

    def segment_video(path, task, threshold, progress=gr.Progress()):
        if not path:
            return None, None
        progress(0, desc="Segmenting the video")
        try:
            video, _ = jobs.segment_video(
                path, task, threshold,
                lambda done, total: progress((done, total), desc="frames", unit="frames"),
            )
        except Exception as error:
            raise fail(error) from None
        return video, video

    tasks = jobs.tasks or ["instance"]
    with gr.Blocks(title="Mask2Former") as app:
        gr.Markdown(f"# Mask2Former\nModel: `{title}`. Files and results stay on this server.")
        with gr.Tab("Image", visible=not jobs.is_video_model):
            with gr.Row():
                image_in = pass_files_unread(gr.Image(
                    label="Image (drop, paste or take a photo)", type="filepath",
                    elem_id="image_in", sources=["upload", "clipboard", "webcam"]))
                overlay = gr.Image(label="Segmentation", type="filepath", format="png",
                                   interactive=False, elem_id="overlay",
                                   buttons=["download", "fullscreen"])
            with gr.Row():
                task = gr.Radio(tasks, value=tasks[0], label="Output")
                threshold = gr.Slider(0.0, 1.0, value=confidence_threshold, step=0.05,
                                      label="Confidence threshold (instances)")
                run = gr.Button("Segment", variant="primary")
            notes = gr.Markdown(elem_id="notes")
            with gr.Row():
                table = gr.Dataframe(headers=TABLE_HEADERS, label="Segments", interactive=False,
                                     elem_id="segments")
                with gr.Column():
                    shown = gr.CheckboxGroup(label="Shown classes", elem_id="shown")
                    downloads = gr.File(label="Downloads", file_count="multiple",
                                        interactive=False, elem_id="downloads")
            result = gr.State(time_to_live=3600)
            gr.Examples([[p] for p in example_images], inputs=[image_in],
                        label="Examples (generated shapes)")
        with gr.Tab("Video"):
            with gr.Row():
                video_in = gr.Video(label="Video", sources=["upload"], include_audio=True,
                                    elem_id="video_in")
                video_out = gr.Video(label="Segmented video", interactive=False,
                                     elem_id="video_out", buttons=["download"])
            with gr.Row():
                video_task = gr.Radio(tasks, value=tasks[0], label="Output per frame",
                                      visible=not jobs.is_video_model)
                video_threshold = gr.Slider(0.0, 1.0, value=confidence_threshold, step=0.05,
                                            label="Confidence threshold")
                video_run = gr.Button("Segment video", variant="primary")
            video_file = gr.File(label="Download", interactive=False, elem_id="video_file")
            gr.Examples([[example_clip]], inputs=[video_in], label="Example (generated clip)")

        image_outputs = [overlay, table, shown, downloads, notes, result]
        image_inputs = [image_in, task, threshold]
        # The job's progress shows on the overlay only, as its elapsed time: Gradio's full
        # progress (an animated overlay on the component) kept the browser drawing, 1.0-1.4 s
        # of CPU per 2 s job, taken from the model when both share a machine (BENCHMARKS.md).
        progress = dict(show_progress="minimal", show_progress_on=[overlay])
        run.click(segment_image, image_inputs, image_outputs, api_name="segment_image",
                  concurrency_id="model", **progress)
        for trigger in (image_in.change, task.change, threshold.release):
            trigger(segment_changed_input, image_inputs + [result], image_outputs,
                    api_name=False, concurrency_id="model", **progress)
        shown.input(show_classes, [shown, threshold, result], [overlay], api_name=False)
        video_inputs = [video_in, video_task, video_threshold]
        for trigger, api_name in ((video_in.change, "segment_video"), (video_run.click, False)):
            trigger(segment_video, video_inputs, [video_out, video_file], api_name=api_name,
                    concurrency_id="model")
    return app


def use_output_folder(output):
    """Send uploads (Gradio's cache) and every temporary file into the ``output`` folder."""
    for folder in ("uploads", "tmp"):
        os.makedirs(os.path.join(output, folder), exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = os.path.join(output, "uploads")
    os.environ["TMPDIR"] = tempfile.tempdir = os.path.join(output, "tmp")


def main(argv=None):
    args = get_parser().parse_args(argv)
    output = os.path.abspath(args.output)
    use_output_folder(output)  # before torch, Gradio and the others pick their folders
    from app_jobs import SegmentationJobs, UploadLimits
    from detectron2.utils.logger import setup_logger

    setup_logger(name="fvcore")
    setup_logger()
    setup_logger(name="mask2former")
    cfg, title = load_config(args.config_file, args.opts)
    limits = UploadLimits(args.max_megapixels, args.max_file_mb, args.max_video_frames)
    jobs = SegmentationJobs(cfg, output, limits, args.window, args.overlap)
    examples_dir = os.path.join(output, "examples")
    app = build_app(jobs, title, args.confidence_threshold, examples_dir)
    app.queue(default_concurrency_limit=1)
    app.launch(
        server_name=args.host, server_port=args.port, max_file_size=f"{args.max_file_mb:g}mb",
        allowed_paths=[jobs.jobs_dir, examples_dir], show_error=False, quiet=True,
        prevent_thread_lock=True, footer_links=["api"], run_history=False, mcp_server=False,
        ssr_mode=False,
    )
    logger.info(f"Mask2Former app on {app.local_url} (model {title}); output in {output}")
    print(f"Running on {app.local_url}", flush=True)
    app.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
