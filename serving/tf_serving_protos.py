"""TF Serving's BatchingParameters and MonitoringConfig messages, which the tensorflow-serving-api
2.16.1 wheel does not ship (it has model_server_config_pb2, not session_bundle_config_pb2 or
monitoring_config_pb2).

Declared here with the field names, numbers and types of
tensorflow_serving/servables/tensorflow/session_bundle_config.proto and
tensorflow_serving/config/monitoring_config.proto at the 2.16.1 tag, in a descriptor pool of
their own, so text_format writes and reads the files exactly as the server's text-proto parser
does (an unknown or misspelt field is an error in both).
"""

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import wrappers_pb2

_PACKAGE = 'tensorflow.serving'
_FIELD = descriptor_pb2.FieldDescriptorProto

# (name, number, type, message type or None, repeated)
_BATCHING_PARAMETERS = (
  ('max_batch_size', 1, _FIELD.TYPE_MESSAGE, '.google.protobuf.Int64Value', False),
  ('batch_timeout_micros', 2, _FIELD.TYPE_MESSAGE, '.google.protobuf.Int64Value', False),
  ('max_enqueued_batches', 3, _FIELD.TYPE_MESSAGE, '.google.protobuf.Int64Value', False),
  ('num_batch_threads', 4, _FIELD.TYPE_MESSAGE, '.google.protobuf.Int64Value', False),
  ('thread_pool_name', 5, _FIELD.TYPE_MESSAGE, '.google.protobuf.StringValue', False),
  ('allowed_batch_sizes', 6, _FIELD.TYPE_INT64, None, True),
  ('pad_variable_length_inputs', 7, _FIELD.TYPE_BOOL, None, False),
  ('enable_large_batch_splitting', 8, _FIELD.TYPE_MESSAGE, '.google.protobuf.BoolValue', False),
  ('max_execution_batch_size', 9, _FIELD.TYPE_MESSAGE, '.google.protobuf.Int64Value', False),
)
_PROMETHEUS_CONFIG = (
  ('enable', 1, _FIELD.TYPE_BOOL, None, False),
  ('path', 2, _FIELD.TYPE_STRING, None, False),
)
_MONITORING_CONFIG = (
  ('prometheus_config', 1, _FIELD.TYPE_MESSAGE, f'.{_PACKAGE}.PrometheusConfig', False),
)


def _message(file_proto, name, fields):
  message = file_proto.message_type.add(name=name)
  for field_name, number, field_type, type_name, repeated in fields:
    field = message.field.add(name=field_name, number=number, type=field_type)
    field.label = _FIELD.LABEL_REPEATED if repeated else _FIELD.LABEL_OPTIONAL
    if type_name:
      field.type_name = type_name


def _classes():
  pool = descriptor_pool.DescriptorPool()
  pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
  file_proto = descriptor_pb2.FileDescriptorProto(
    name='fmnist/tf_serving_config.proto',
    package=_PACKAGE,
    syntax='proto3',
    dependency=[wrappers_pb2.DESCRIPTOR.name],
  )
  _message(file_proto, 'BatchingParameters', _BATCHING_PARAMETERS)
  _message(file_proto, 'PrometheusConfig', _PROMETHEUS_CONFIG)
  _message(file_proto, 'MonitoringConfig', _MONITORING_CONFIG)
  pool.Add(file_proto)
  factory = message_factory.MessageFactory(pool)
  return tuple(
    factory.GetPrototype(pool.FindMessageTypeByName(f'{_PACKAGE}.{name}'))
    for name in ('BatchingParameters', 'MonitoringConfig')
  )


BatchingParameters, MonitoringConfig = _classes()
