// Fused per-channel passes for the normalization layers on CPU.
//
// Each op reads its full-size inputs once: TensorFlow's stock kernels need a
// separate pass (and often a fresh buffer) for every multiply, add and
// reduction, and those passes, not arithmetic, bound batch normalization on
// CPU. Tensors are viewed as [rows, channels], channels being the last axis.
// The math stays in Python (trainer/layers/channel_passes.py); these kernels
// only evaluate it with fewer trips through memory.

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace fmnist {
namespace {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Status;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::errors::InvalidArgument;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

// Shape function: output 0 has input 0's shape; inputs first_vector.. are
// per-channel vectors as long as input 0's last axis.
Status SameShapeWithChannelVectors(InferenceContext* c, int first_vector) {
  ShapeHandle x;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &x));
  DimensionHandle channels = c->Dim(x, -1);
  for (int i = first_vector; i < c->num_inputs(); ++i) {
    ShapeHandle vector;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 1, &vector));
    DimensionHandle unused;
    TF_RETURN_IF_ERROR(c->Merge(c->Dim(vector, 0), channels, &unused));
  }
  c->set_output(0, x);
  return ::tensorflow::OkStatus();
}

REGISTER_OP("FmnistChannelSumAndDot")
    .Input("x: T")
    .Input("y: T")
    .Output("sum_x: T")
    .Output("sum_xy: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &x));
      TF_RETURN_IF_ERROR(c->Merge(x, c->input(1), &x));
      ShapeHandle channels = c->Vector(c->Dim(x, -1));
      c->set_output(0, channels);
      c->set_output(1, channels);
      return ::tensorflow::OkStatus();
    })
    .Doc("sum_x[c] = sum of x[..., c]; sum_xy[c] = sum of x[..., c] * y[..., c].");

REGISTER_OP("FmnistChannelAffine")
    .Input("x: T")
    .Input("scale: T")
    .Input("offset: T")
    .Output("y: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) { return SameShapeWithChannelVectors(c, 1); })
    .Doc("y[..., c] = x[..., c] * scale[c] + offset[c].");

REGISTER_OP("FmnistChannelLinearCombination")
    .Input("a: T")
    .Input("b: T")
    .Input("a_scale: T")
    .Input("b_scale: T")
    .Input("offset: T")
    .Output("y: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle unused;
      TF_RETURN_IF_ERROR(c->Merge(c->input(0), c->input(1), &unused));
      return SameShapeWithChannelVectors(c, 2);
    })
    .Doc("y[..., c] = a[..., c] * a_scale[c] + b[..., c] * b_scale[c] + offset[c].");

// Rows summed in T before the block's total is added in double: long enough to
// vectorize, short enough that float32 rounding stays near TensorFlow's own
// pairwise reductions.
constexpr int64_t kRowsPerBlock = 128;

struct Layout {
  int64_t rows;
  int64_t channels;
};

Status GetLayout(const Tensor& x, Layout* layout) {
  if (x.dims() < 1) return InvalidArgument("expected a tensor with a channel axis, got a scalar");
  layout->channels = x.dim_size(x.dims() - 1);
  layout->rows = layout->channels == 0 ? 0 : x.NumElements() / layout->channels;
  return ::tensorflow::OkStatus();
}

Status CheckSameShape(const Tensor& first, const Tensor& other, const char* other_name) {
  if (first.shape() == other.shape()) return ::tensorflow::OkStatus();
  return InvalidArgument(other_name, " has shape ", other.shape().DebugString(), ", expected ",
                         first.shape().DebugString());
}

Status CheckChannelVector(const Tensor& vector, const char* name, int64_t channels) {
  if (vector.dims() == 1 && vector.dim_size(0) == channels) return ::tensorflow::OkStatus();
  return InvalidArgument(name, " must have shape [", channels, "] (one value per channel), got ",
                         vector.shape().DebugString());
}

template <typename Work>
void ParallelFor(OpKernelContext* ctx, int64_t units, int64_t cost_per_unit, Work work) {
  ctx->device()->tensorflow_cpu_worker_threads()->workers->ParallelFor(units, cost_per_unit, work);
}

// An op's inputs, checked and as raw data: the first tensors, of one shape, are
// the full-size operands; the rest are vectors of one value per channel.
template <typename T>
struct ChannelOpInputs {
  Layout layout;
  std::vector<const T*> tensors;
  std::vector<const T*> vectors;
};

// Reads inputs 0..names.size()-1, the first num_tensors of them full-size;
// errors name the input at fault.
template <typename T>
Status ReadInputs(OpKernelContext* ctx, int num_tensors, std::initializer_list<const char*> names,
                  ChannelOpInputs<T>* inputs) {
  const Tensor& first = ctx->input(0);
  TF_RETURN_IF_ERROR(GetLayout(first, &inputs->layout));
  int index = 0;
  for (const char* name : names) {
    const Tensor& input = ctx->input(index);
    if (index < num_tensors) {
      TF_RETURN_IF_ERROR(CheckSameShape(first, input, name));
      inputs->tensors.push_back(input.flat<T>().data());
    } else {
      TF_RETURN_IF_ERROR(CheckChannelVector(input, name, inputs->layout.channels));
      inputs->vectors.push_back(input.flat<T>().data());
    }
    ++index;
  }
  return ::tensorflow::OkStatus();
}

template <typename T>
class ChannelSumAndDotOp : public OpKernel {
 public:
  explicit ChannelSumAndDotOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    ChannelOpInputs<T> inputs;
    OP_REQUIRES_OK(ctx, ReadInputs(ctx, 2, {"x", "y"}, &inputs));
    const Layout layout = inputs.layout;
    const int64_t channels = layout.channels;
    const int64_t blocks = (layout.rows + kRowsPerBlock - 1) / kRowsPerBlock;
    // Per block: channels sums of x, then channels sums of x * y.
    std::vector<double> block_sums(2 * blocks * channels, 0.0);
    const T* x_data = inputs.tensors[0];
    const T* y_data = inputs.tensors[1];
    auto sum_blocks = [&](int64_t first_block, int64_t end_block) {
      std::vector<T> sum_x(channels), sum_xy(channels);
      for (int64_t block = first_block; block < end_block; ++block) {
        std::fill(sum_x.begin(), sum_x.end(), T(0));
        std::fill(sum_xy.begin(), sum_xy.end(), T(0));
        T* __restrict sx = sum_x.data();
        T* __restrict sxy = sum_xy.data();
        const int64_t end_row = std::min(layout.rows, (block + 1) * kRowsPerBlock);
        for (int64_t row = block * kRowsPerBlock; row < end_row; ++row) {
          const T* __restrict xr = x_data + row * channels;
          const T* __restrict yr = y_data + row * channels;
          for (int64_t c = 0; c < channels; ++c) {
            sx[c] += xr[c];
            sxy[c] += xr[c] * yr[c];
          }
        }
        double* out = block_sums.data() + 2 * block * channels;
        std::copy(sum_x.begin(), sum_x.end(), out);
        std::copy(sum_xy.begin(), sum_xy.end(), out + channels);
      }
    };
    ParallelFor(ctx, blocks, 3 * kRowsPerBlock * channels, sum_blocks);

    Tensor* sum_x = nullptr;
    Tensor* sum_xy = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({channels}), &sum_x));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({channels}), &sum_xy));
    auto total_x = sum_x->flat<T>();
    auto total_xy = sum_xy->flat<T>();
    for (int64_t c = 0; c < channels; ++c) {
      double tx = 0.0, txy = 0.0;
      for (int64_t block = 0; block < blocks; ++block) {
        tx += block_sums[2 * block * channels + c];
        txy += block_sums[(2 * block + 1) * channels + c];
      }
      total_x(c) = static_cast<T>(tx);
      total_xy(c) = static_cast<T>(txy);
    }
  }
};

template <typename T>
class ChannelAffineOp : public OpKernel {
 public:
  explicit ChannelAffineOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    ChannelOpInputs<T> inputs;
    OP_REQUIRES_OK(ctx, ReadInputs(ctx, 1, {"x", "scale", "offset"}, &inputs));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, ctx->input(0).shape(), &y));
    const int64_t channels = inputs.layout.channels;
    const T* x_data = inputs.tensors[0];
    const T* scale = inputs.vectors[0];
    const T* offset = inputs.vectors[1];
    T* y_data = y->flat<T>().data();
    ParallelFor(ctx, inputs.layout.rows, 3 * channels, [&](int64_t first_row, int64_t end_row) {
      for (int64_t row = first_row; row < end_row; ++row) {
        const T* xr = x_data + row * channels;
        T* yr = y_data + row * channels;
        for (int64_t c = 0; c < channels; ++c) yr[c] = xr[c] * scale[c] + offset[c];
      }
    });
  }
};

template <typename T>
class ChannelLinearCombinationOp : public OpKernel {
 public:
  explicit ChannelLinearCombinationOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    ChannelOpInputs<T> inputs;
    OP_REQUIRES_OK(ctx, ReadInputs(ctx, 2, {"a", "b", "a_scale", "b_scale", "offset"}, &inputs));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx,
                   ctx->forward_input_or_allocate_output({0, 1}, 0, ctx->input(0).shape(), &y));
    const int64_t channels = inputs.layout.channels;
    const T* a_data = inputs.tensors[0];
    const T* b_data = inputs.tensors[1];
    const T* a_scale = inputs.vectors[0];
    const T* b_scale = inputs.vectors[1];
    const T* offset = inputs.vectors[2];
    T* y_data = y->flat<T>().data();
    ParallelFor(ctx, inputs.layout.rows, 5 * channels, [&](int64_t first_row, int64_t end_row) {
      for (int64_t row = first_row; row < end_row; ++row) {
        const T* ar = a_data + row * channels;
        const T* br = b_data + row * channels;
        T* yr = y_data + row * channels;
        for (int64_t c = 0; c < channels; ++c) {
          yr[c] = ar[c] * a_scale[c] + br[c] * b_scale[c] + offset[c];
        }
      }
    });
  }
};

#define REGISTER_CPU_KERNELS(T)                                                          \
  REGISTER_KERNEL_BUILDER(                                                               \
      Name("FmnistChannelSumAndDot").Device(DEVICE_CPU).TypeConstraint<T>("T"),          \
      ChannelSumAndDotOp<T>);                                                            \
  REGISTER_KERNEL_BUILDER(                                                               \
      Name("FmnistChannelAffine").Device(DEVICE_CPU).TypeConstraint<T>("T"),             \
      ChannelAffineOp<T>);                                                               \
  REGISTER_KERNEL_BUILDER(                                                               \
      Name("FmnistChannelLinearCombination").Device(DEVICE_CPU).TypeConstraint<T>("T"),  \
      ChannelLinearCombinationOp<T>);

REGISTER_CPU_KERNELS(float)
REGISTER_CPU_KERNELS(double)

}  // namespace
}  // namespace fmnist
