#include "checks.h"

#include <algorithm>
#include <cctype>
#include <limits>

namespace ddpm {
namespace ops {

void check_float_dtype(const char* op, const char* name, const at::Tensor& x) {
  TORCH_CHECK(x.defined(), op, ": expected ", name, " to be a tensor, got None");
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble ||
                  dtype == at::kHalf || dtype == at::kBFloat16,
              op, ": expected ", name,
              " to have dtype float32, float64, float16 or bfloat16, got ",
              dtype);
}

void check_data_tensor(const char* op, const char* name, const at::Tensor& x) {
  check_float_dtype(op, name, x);
  TORCH_CHECK(x.dim() >= 1, op, ": expected ", name,
              " to have shape [B, ...] (at least 1-D), got a 0-D tensor");
}

NoiseKey check_noise_key(const char* op, int64_t seed, int64_t offset) {
  TORCH_CHECK(offset >= 0 && offset % 4 == 0, op,
              ": expected offset to be a multiple of 4 and >= 0 (it counts "
              "32-bit Philox draws per subsequence; each call uses 4), got ",
              offset);
  return {static_cast<uint64_t>(seed), static_cast<uint64_t>(offset)};
}

NoiseKey tensor_noise_key(const char* op, const at::Tensor& key, const at::Tensor& data,
                          bool runs) {
  TORCH_CHECK(key.scalar_type() == at::kLong && key.dim() == 1 && key.size(0) == 2, op,
              ": expected key to be an int64 tensor of shape [2] (seed, offset), got ",
              key.scalar_type(), " ", key.sym_sizes());
  TORCH_CHECK(key.device().is_cpu() || key.device() == data.device(), op,
              ": expected key on the CPU or on ", data.device(), " like the data, got ",
              key.device());
  if (!runs) return {0, 0};
  if (key.device().is_cpu()) {
    const at::Tensor k = key.contiguous();
    return check_noise_key(op, k.data_ptr<int64_t>()[0], k.data_ptr<int64_t>()[1]);
  }
  TORCH_CHECK(key.is_contiguous(), op, ": expected key on ", key.device(), " to be contiguous");
  NoiseKey on_device{0, 0};
  on_device.seed_on_device = key.data_ptr<int64_t>();
  on_device.offset_on_device = key.data_ptr<int64_t>() + 1;
  return on_device;
}

namespace {
CudaNoiseKeyDrawer cuda_noise_key_drawer = nullptr;
}  // namespace

void set_cuda_noise_key_drawer(CudaNoiseKeyDrawer drawer) { cuda_noise_key_drawer = drawer; }

NoiseKey draw_noise_key(const char* op, const c10::IValue& generator, const at::Device& device) {
  TORCH_CHECK(generator.isNone() || generator.isGenerator(), op,
              ": expected generator to be a torch.Generator or None");
  const c10::optional<at::Generator> gen =
      generator.isNone() ? c10::nullopt : c10::optional<at::Generator>(generator.toGenerator());
  if (gen.has_value() && (device.is_cpu() || device.is_cuda())) {
    TORCH_CHECK(gen->device().type() == device.type(), op, ": expected a generator on ",
                device.type(), " for data on ", device, ", got one on ", gen->device());
  }
  if (device.is_cuda()) {
    TORCH_CHECK(cuda_noise_key_drawer != nullptr, op,
                ": this build of torch_ddpm has no CUDA kernels");
    return cuda_noise_key_drawer(op, gen, device);
  }
  if (device.is_cpu()) {
    // one int64 as torch.randint(-2**63, 2**63 - 1, ()) draws it (PhiloxStream's)
    const int64_t seed =
        at::randint(std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), {},
                    gen, at::TensorOptions().dtype(at::kLong))
            .item<int64_t>();
    return {static_cast<uint64_t>(seed), 0};
  }
  return {0, 0};  // meta and fake tensors: no numbers
}

void check_like(const char* op, const NamedTensor& other,
                const NamedTensor& ref) {
  const at::Tensor& o = *other.second;
  const at::Tensor& r = *ref.second;
  TORCH_CHECK(o.defined(), op, ": expected ", other.first,
              " to be a tensor, got None");
  TORCH_CHECK(o.device() == r.device(), op, ": expected ", other.first,
              " on ", r.device(), " like ", ref.first, ", got ", o.device());
  TORCH_CHECK(o.scalar_type() == r.scalar_type(), op, ": expected ",
              other.first, " to have dtype ", r.scalar_type(), " like ",
              ref.first, ", got ", o.scalar_type());
  // (sym_sizes: under torch.export or torch.compile with a dynamic batch
  // the sizes are symbols, which must not be specialized to numbers here)
  TORCH_CHECK(o.sym_sizes() == r.sym_sizes(), op, ": expected ", other.first,
              " to have shape ", r.sym_sizes(), " like ", ref.first, ", got ",
              o.sym_sizes());
}

void check_timesteps(const char* op, const at::Tensor& t, const at::Tensor& x) {
  TORCH_CHECK(t.defined(), op, ": expected t to be a tensor, got None");
  TORCH_CHECK(t.scalar_type() == at::kLong, op,
              ": expected t to be an int64 tensor, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 1 && t.sym_size(0) == x.sym_size(0), op,
              ": expected t to have shape [", x.sym_size(0),
              "] (one timestep per sample), got ", t.sym_sizes());
  TORCH_CHECK(t.device() == x.device(), op, ": expected t on ", x.device(),
              " like the data, got ", t.device());
}

int64_t check_tables(const char* op, c10::ArrayRef<NamedTensor> tables,
                     const at::Tensor& x) {
  const NamedTensor& first = *tables.begin();
  const int64_t length = first.second->defined() && first.second->dim() == 1
                             ? first.second->size(0)
                             : -1;
  for (const NamedTensor& named : tables) {
    const at::Tensor& tab = *named.second;
    TORCH_CHECK(tab.defined(), op, ": expected ", named.first,
                " to be a tensor, got None");
    TORCH_CHECK(tab.dim() == 1, op, ": expected ", named.first,
                " to be a 1-D schedule table of length T, got shape ",
                tab.sizes());
    TORCH_CHECK(tab.size(0) >= 1, op, ": expected ", named.first,
                " to have at least one timestep, got an empty table");
    TORCH_CHECK(tab.size(0) == length, op, ": expected ", named.first,
                " to have length ", length, " like ", first.first, ", got ",
                tab.size(0));
    TORCH_CHECK(tab.scalar_type() == at::kFloat ||
                    tab.scalar_type() == at::kDouble,
                op, ": expected ", named.first,
                " to be float32 or float64, got ", tab.scalar_type());
    TORCH_CHECK(tab.scalar_type() == first.second->scalar_type(), op,
                ": expected ", named.first, " to have dtype ",
                first.second->scalar_type(), " like ", first.first, ", got ",
                tab.scalar_type());
    TORCH_CHECK(tab.device() == x.device(), op, ": expected ", named.first,
                " on ", x.device(), " like the data, got ", tab.device());
  }
  return length;
}

namespace {

// The mode `value` (any case) of argument `name`, one of `known`.
template <typename Mode>
Mode parse_mode(const char* op, const char* name, const std::string& value,
                std::initializer_list<std::pair<const char*, Mode>> known,
                const char* hint = "") {
  std::string lower = value;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  std::string names;
  for (const auto& mode : known) {
    if (lower == mode.first) return mode.second;
    names += std::string(names.empty() ? "'" : ", '") + mode.first + "'";
  }
  TORCH_CHECK(false, op, ": expected ", name, " to be one of ", names, ", got '", value, "'",
              hint);
}

}  // namespace

MeanType parse_mean_type(const char* op, const std::string& name) {
  return parse_mode<MeanType>(op, "model_mean_type", name,
                              {{"epsilon", MeanType::kEpsilon},
                               {"start_x", MeanType::kStartX},
                               {"previous_x", MeanType::kPreviousX},
                               {"v", MeanType::kV}});
}

VarType parse_var_type(const char* op, const std::string& name) {
  return parse_mode<VarType>(op, "model_var_type", name,
                             {{"fixed_small", VarType::kFixedSmall},
                              {"fixed_large", VarType::kFixedLarge},
                              {"learned", VarType::kLearned},
                              {"learned_range", VarType::kLearnedRange}});
}

bool parse_solver_type_is_heun(const char* op, const std::string& name) {
  return parse_mode<bool>(op, "solver_type", name, {{"midpoint", false}, {"heun", true}});
}

bool parse_algorithm_type_is_sde(const char* op, const std::string& name) {
  return parse_mode<bool>(op, "algorithm_type", name,
                          {{"dpmsolver++", false}, {"sde-dpmsolver++", true}},
                          " (dpmsolver and sde-dpmsolver, the noise-prediction forms, are not "
                          "fused)");
}

LossTarget parse_loss_target(const char* op, const std::string& name) {
  const bool posterior = name == "previous_x" || name == "PREVIOUS_X";
  return parse_mode<LossTarget>(
      op, "target", name,
      {{"epsilon", LossTarget::kEpsilon}, {"start_x", LossTarget::kStartX}, {"v", LossTarget::kV}},
      posterior ? " (the posterior mean as a target is not fused: compute it with "
                  "posterior_mean_variance)"
                : "");
}

void check_noise_offset(const char* op, const at::Tensor* noise_offset, const at::Tensor& x) {
  if (noise_offset == nullptr) return;
  const at::Tensor& o = *noise_offset;
  TORCH_CHECK(x.dim() >= 2, op, ": expected x_start to have shape [B, C, ...] with a noise_offset, "
              "got ", x.sizes());
  TORCH_CHECK(o.dim() == 2 && o.sym_size(0) == x.sym_size(0) && o.sym_size(1) == x.sym_size(1),
              op, ": expected noise_offset to have shape [", x.sym_size(0), ", ", x.sym_size(1),
              "] (one value per sample and channel), got ", o.sym_sizes());
  TORCH_CHECK(o.scalar_type() == x.scalar_type(), op, ": expected noise_offset to have dtype ",
              x.scalar_type(), " like the data, got ", o.scalar_type());
  TORCH_CHECK(o.device() == x.device(), op, ": expected noise_offset on ", x.device(),
              " like the data, got ", o.device());
}

void fail_bad_timestep(const char* op, const at::Tensor& t, int64_t index,
                       int64_t num_timesteps) {
  TORCH_CHECK(false, op, ": expected every t in [0, ", num_timesteps,
              ") (the schedule length), got t[", index,
              "] = ", t[index].item<int64_t>());
}

namespace {

// Element offsets [first, last] a non-empty tensor spans in its storage.
std::pair<int64_t, int64_t> storage_span(const at::Tensor& x) {
  int64_t last = x.storage_offset();
  for (int64_t d = 0; d < x.dim(); ++d) last += (x.size(d) - 1) * x.stride(d);
  return {x.storage_offset(), last};
}

// Some element of a is some element of b (byte-exact for one dtype; any
// shared byte range otherwise). Storage offsets, not pointers, so that meta
// and fake tensors are checked alike.
bool shares_memory(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0 || b.numel() == 0 || !a.is_alias_of(b)) return false;
  const auto sa = storage_span(a);
  const auto sb = storage_span(b);
  const int64_t a_first = sa.first * a.element_size();
  const int64_t a_end = (sa.second + 1) * a.element_size();
  const int64_t b_first = sb.first * b.element_size();
  const int64_t b_end = (sb.second + 1) * b.element_size();
  return a_first < b_end && b_first < a_end;
}

bool same_memory(const at::Tensor& a, const at::Tensor& b) {
  return a.is_alias_of(b) && a.storage_offset() == b.storage_offset() &&
         a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() &&
         a.strides() == b.strides();
}

}  // namespace

at::Tensor output_like(const char* op, const CallArgs& args, int out, const at::Tensor& ref,
                       int in_place_with) {
  if (out < 0) return at::empty_like(ref, at::MemoryFormat::Contiguous);
  const at::Tensor& given = args.tensor(out);
  const char* name = args.name(out);
  check_like(op, {name, &given}, {"the result", &ref});
  TORCH_CHECK(given.is_contiguous(), op, ": expected ", name,
              " (an out= argument) to be contiguous");
  for (int i = 0; i < static_cast<int>(args.count()); ++i) {
    // (a later output is checked against this one in its turn)
    if (i == out || (args.is_output(i) && i > out)) continue;
    const at::Tensor* x = args.optional_tensor(i);
    if (x == nullptr || !shares_memory(given, *x)) continue;
    const bool in_place_ok = i == in_place_with;
    TORCH_CHECK(same_memory(given, *x), op, ": ", name, " overlaps ", args.name(i),
                " in part (they share memory but are not the same tensor); ", name,
                " may be new memory",
                in_place_ok ? std::string(" or ") + args.name(i) + " itself" : std::string(""));
    TORCH_CHECK(in_place_ok, op, ": ", name, " is ", args.name(i),
                " (the same memory), which ", op, " cannot write in place: pass "
                "another tensor as ", name, " (docs/operators.md: outputs and inputs that "
                "share memory)");
  }
  return given;
}

void check_timestep_values(const char* op, const at::Tensor& t, int64_t num_timesteps) {
  if (!t.is_cpu()) return;
  const at::Tensor tc = t.contiguous();
  const int64_t* values = tc.data_ptr<int64_t>();
  for (int64_t b = 0; b < tc.numel(); ++b) {
    if (values[b] < 0 || values[b] >= num_timesteps) {
      fail_bad_timestep(op, tc, b, num_timesteps);
    }
  }
}

std::vector<c10::SymInt> per_sample_shape(const at::Tensor& x) {
  std::vector<c10::SymInt> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = x.sym_size(0);
  return shape;
}

}  // namespace ops
}  // namespace ddpm
