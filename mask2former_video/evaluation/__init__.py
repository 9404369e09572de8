from .ytvis_evaluator import YTVISEvaluator, video_predictions_to_results
from .ytvis_metric import evaluate_tracks, track_iou

__all__ = ["YTVISEvaluator", "evaluate_tracks", "track_iou", "video_predictions_to_results"]
