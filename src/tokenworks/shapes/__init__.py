"""3D shapes: point-cloud tokenizers (P06 VAT's 3D setting) and their training."""

from tokenworks.shapes.vat import PointCloudTokenizer, evaluate_pointcloud_tokenizer, train_pointcloud_tokenizer

__all__ = ["PointCloudTokenizer", "evaluate_pointcloud_tokenizer", "train_pointcloud_tokenizer"]
