"""The former name of :mod:`alexnet.data.imagenet_val`, kept so that ``python -m alexnet.data.imagenet`` still works."""

from alexnet.data.imagenet_val import main, read_labels, sort_val

__all__ = ["main", "read_labels", "sort_val"]

if __name__ == "__main__":
    main()
