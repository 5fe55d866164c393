"""Data sets, in one place for training, evaluation and the demo: image folders (`image_files`), the built-in 2-D
toys (`toys`), scikit-learn's 8x8 digits with the package's train / held-out split (`digits`) and Fashion-MNIST
(`fashion_mnist`: a folder, Debian's package or the Hub; `fashion_mnist_files`: the IDX reader and the held-out test
images the package ships), and the built-in data sets' names (`names`, light enough for a parser). This layer
imports none of training, evaluation, the demo or the command lines."""
