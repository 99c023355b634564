# The image every component runs in on Kubeflow / Vertex AI Pipelines: the TFX base image
# (Python 3.10, TF 2.16, TFX 1.16, the same stack as local) plus this project, installed with
# the same constraints file as the local venv so module paths such as trainer.task.run_fn resolve.
FROM gcr.io/tfx-oss-public/tfx:1.16.0

WORKDIR /pipeline
COPY constraints.txt pyproject.toml README.md ./
COPY components/ components/
COPY pipeline/ pipeline/
COPY trainer/ trainer/
RUN pip install --no-cache-dir -c constraints.txt .

# Vertex / KFP steps name their own command (the TFX Kubeflow V2 entrypoint), so the entrypoint
# serves the other use of this image: the Dataflow worker image (--sdk_container_image), which
# must start Beam's boot program. The TFX image carries it from Beam's SDK image. The user stays
# root: Beam's own worker images run boot as root, and the TFX base defines no other user.
ENTRYPOINT ["/opt/apache/beam/boot"]
