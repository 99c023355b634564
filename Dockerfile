# The image every component runs in on Kubeflow / Vertex AI Pipelines: the TFX base image
# (Python 3.10, TF 2.16, TFX 1.16, the same stack as local) plus this project, installed with
# the same constraints file as the local venv so module paths such as trainer.task.run_fn resolve.
FROM gcr.io/tfx-oss-public/tfx:1.16.0

WORKDIR /pipeline
COPY constraints.txt pyproject.toml README.md ./
COPY components/ components/
COPY contract/ contract/
COPY dataset/ dataset/
COPY pipeline/ pipeline/
COPY serving/ serving/
COPY trainer/ trainer/
RUN pip install --no-cache-dir -c constraints.txt .

# A GPU Trainer step needs TensorFlow 2.16.2's CUDA 12.3 and cuDNN 8.9 libraries here, and the
# node's NVIDIA driver (Vertex AI and GKE GPU nodes provide it). TFX builds its image on a Deep
# Learning Containers tf2-gpu image, which ships CUDA and cuDNN system-wide. If this base has no
# usable copy, TensorFlow's own pinned CUDA wheels (tensorflow[and-cuda], in constraints.txt) are
# installed and registered with the dynamic linker (TF 2.16 does not always find them by itself,
# tensorflow/tensorflow#63362); either way the check must pass or the build fails.
COPY tools/cuda_libraries.py tools/
RUN python tools/cuda_libraries.py \
    || (pip install --no-cache-dir -c constraints.txt 'tensorflow[and-cuda]==2.16.2' \
        && find "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/nvidia" \
             -mindepth 2 -maxdepth 2 -name lib -type d > /etc/ld.so.conf.d/tensorflow-cuda-wheels.conf \
        && ldconfig \
        && python tools/cuda_libraries.py)

# Vertex / KFP steps name their own command (the TFX Kubeflow V2 entrypoint), so the entrypoint
# serves the other use of this image: the Dataflow worker image (--sdk_container_image), which
# must start Beam's boot program. The TFX image carries it from Beam's SDK image. The user stays
# root: Beam's own worker images run boot as root, and the TFX base defines no other user.
ENTRYPOINT ["/opt/apache/beam/boot"]
