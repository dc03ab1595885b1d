/**
 * \file mlff.hpp
 * \brief Header-only C++17 wrapper of the mlff C API (mlff.h): RAII model handle,
 * exceptions instead of status codes, std::vector in and out.
 *
 * \code
 * mlff::Options options;
 * options.precision = MLFF_PRECISION_F64;
 * mlff::Model model("model.safetensors", options);
 * mlff::System water{{8, 1, 1}, {0, 0, 0, 0.96, 0, 0, -0.24, 0.93, 0}};
 * mlff::Results r = model.compute(water);   // energy, forces, virial
 * std::cout << r.energy << " eV\n";
 * \endcode
 *
 * Every failure throws mlff::Error, which carries the ::MlffStatus and the
 * library's message. Threads: one mlff::Model may be used by one thread at a
 * time; different models may be used concurrently.
 */
#ifndef MLFF_HPP
#define MLFF_HPP

#include "mlff.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mlff {

/** A failed call: the status and the message of mlff_last_error(). */
class Error : public std::runtime_error {
public:
    Error(MlffStatus status, const std::string &message)
        : std::runtime_error(message), status_(status) {}

    /** The status the C API returned. */
    MlffStatus status() const noexcept { return status_; }

private:
    MlffStatus status_;
};

namespace detail {
/** Throws mlff::Error carrying the library's message unless `status` is MLFF_OK. */
inline void check(MlffStatus status) {
    if (status != MLFF_OK) {
        throw Error(status, mlff_last_error());
    }
}
} // namespace detail

/** Version of the loaded library, e.g. "0.1.0". */
inline std::string version() { return mlff_version(); }

/** ABI version of the loaded library (compare with MLFF_ABI_VERSION). */
inline std::uint32_t abi_version() { return mlff_abi_version(); }

/** How to open a model; the defaults are those of mlff_options_default(). */
struct Options {
    MlffDevice device = MLFF_DEVICE_AUTO;
    std::int32_t device_index = 0;
    MlffPrecision precision = MLFF_PRECISION_F32;
    /** 0: MLFF_NUM_THREADS, else OMP_NUM_THREADS, else all cores. */
    std::uint32_t num_threads = 0;

    MlffOptions to_c() const { return MlffOptions{device, device_index, precision, num_threads}; }
};

/** Which outputs to compute (the energy always is). */
struct Request {
    bool forces = true;
    bool virial = true;
    bool atom_energies = false;
    bool atom_virials = false;

    static Request energy_only() { return Request{false, false, false, false}; }
    static Request all() { return Request{true, true, true, true}; }
};

/** One structure, owning its arrays. Units: Å. */
struct System {
    /** Atomic numbers, one per atom (local atoms first, then ghosts). */
    std::vector<std::int32_t> numbers;
    /** 3 values per atom: x0, y0, z0, x1, ... */
    std::vector<double> positions;
    /** Lattice vectors as rows, or none. */
    std::optional<std::array<double, 9>> cell;
    std::array<bool, 3> pbc{{false, false, false}};
    /** Atoms whose energy counts; all atoms when unset. */
    std::optional<std::size_t> n_local;

    std::size_t n_atoms() const { return numbers.size(); }

    /**
     * A view for the C API, valid while this System is alive and unchanged.
     * Throws MLFF_ERR_INVALID_ARGUMENT when positions does not hold 3 values per atom.
     */
    MlffSystem to_c() const {
        if (positions.size() != 3 * numbers.size()) {
            throw Error(MLFF_ERR_INVALID_ARGUMENT,
                        "mlff::System: " + std::to_string(numbers.size()) + " atomic numbers but " +
                            std::to_string(positions.size()) + " position values (expected 3 per atom)");
        }
        MlffSystem view{};
        view.n_atoms = numbers.size();
        view.n_local = n_local.value_or(numbers.size());
        view.numbers = numbers.data();
        view.positions = positions.data();
        view.cell = cell ? cell->data() : nullptr;
        for (int axis = 0; axis < 3; ++axis) {
            view.pbc[axis] = pbc[static_cast<std::size_t>(axis)];
        }
        return view;
    }
};

/** Results of one evaluation; arrays not requested are empty. Units: eV, eV/Å. */
struct Results {
    double energy = 0.0;
    /** 3 * n_atoms values, or empty. */
    std::vector<double> forces;
    /** 9 values W[a][b] at 3 * a + b (LAMMPS convention), or empty. */
    std::vector<double> virial;
    /** n_atoms values, or empty. */
    std::vector<double> atom_energies;
    /** 9 * n_atoms values at 9 * i + 3 * a + b, or empty. */
    std::vector<double> atom_virials;

    /** Sizes the requested arrays and points `out`'s arrays at them. */
    void prepare(std::size_t n_atoms, const Request &request, MlffResults &out) {
        forces.assign(request.forces ? 3 * n_atoms : 0, 0.0);
        virial.assign(request.virial ? 9 : 0, 0.0);
        atom_energies.assign(request.atom_energies ? n_atoms : 0, 0.0);
        atom_virials.assign(request.atom_virials ? 9 * n_atoms : 0, 0.0);
        out.energy = 0.0;
        out.forces = request.forces ? forces.data() : nullptr;
        out.virial = request.virial ? virial.data() : nullptr;
        out.atom_energies = request.atom_energies ? atom_energies.data() : nullptr;
        out.atom_virials = request.atom_virials ? atom_virials.data() : nullptr;
    }
};

/** A warning (known defect) of a model. */
struct Warning {
    std::string code;
    std::string message;
};

/** A loaded model (move-only RAII owner of an MlffModel handle). */
class Model {
public:
    /** Loads `path`; throws mlff::Error (MLFF_ERR_IO, MLFF_ERR_MODEL_FORMAT, MLFF_ERR_DEVICE, ...). */
    explicit Model(const std::string &path, const Options &options = Options()) {
        if (mlff_abi_version() != MLFF_ABI_VERSION) {
            throw Error(MLFF_ERR_INTERNAL, "mlff.hpp was written for ABI version " + std::to_string(MLFF_ABI_VERSION) +
                                               " but the loaded library has ABI version " +
                                               std::to_string(mlff_abi_version()));
        }
        const MlffOptions c_options = options.to_c();
        detail::check(mlff_model_create(path.c_str(), &c_options, &handle_));
    }

    /**
     * Loads `path` on the CUDA engine in the caller's CUDA driver context `cuda_context`
     * (a CUcontext; nullptr = the one current on this thread), e.g. OpenMM's, so that
     * its device buffers can go to compute_device(). See mlff_model_create_in_cuda_context.
     */
    static Model in_cuda_context(const std::string &path, void *cuda_context, const Options &options = Options()) {
        Model model;
        const MlffOptions c_options = options.to_c();
        detail::check(mlff_model_create_in_cuda_context(path.c_str(), &c_options, cuda_context, &model.handle_));
        return model;
    }

    ~Model() { mlff_model_destroy(handle_); }

    Model(const Model &) = delete;
    Model &operator=(const Model &) = delete;
    Model(Model &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Model &operator=(Model &&other) noexcept {
        if (this != &other) {
            mlff_model_destroy(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }

    /** The C handle, for calls this wrapper does not cover (still owned by this Model). */
    MlffModel *get() const noexcept { return handle_; }

    /** Cutoff radius in Å. */
    double cutoff() const {
        require_handle("cutoff");
        return mlff_model_cutoff(handle_);
    }

    /** Message-passing layers; the receptive field is num_layers() * cutoff(). */
    std::uint32_t num_layers() const {
        require_handle("num_layers");
        return mlff_model_num_layers(handle_);
    }

    /** The device in use: MLFF_DEVICE_CPU or MLFF_DEVICE_CUDA. */
    MlffDevice device() const {
        MlffDevice value = MLFF_DEVICE_AUTO;
        detail::check(mlff_model_device(handle_, &value));
        return value;
    }

    /** The precision in use (an MLFF_PRECISION_* value). */
    MlffPrecision precision() const {
        MlffPrecision value = MLFF_PRECISION_F32;
        detail::check(mlff_model_precision(handle_, &value));
        return value;
    }

    /** E.g. "cpu (f64, 2 threads)". */
    std::string engine_description() const {
        require_handle("engine_description");
        return mlff_model_engine_description(handle_);
    }

    /** Atomic numbers the model accepts, increasing. */
    std::vector<std::int32_t> supported_elements() const {
        require_handle("supported_elements");
        std::vector<std::int32_t> numbers(mlff_model_num_supported_elements(handle_));
        if (!numbers.empty()) {
            detail::check(mlff_model_supported_elements(handle_, numbers.data(), numbers.size()));
        }
        return numbers;
    }

    /** Known defects found when the model was loaded. */
    std::vector<Warning> warnings() const {
        require_handle("warnings");
        std::vector<Warning> result;
        const std::size_t count = mlff_model_num_warnings(handle_);
        for (std::size_t i = 0; i < count; ++i) {
            const char *code = nullptr;
            const char *message = nullptr;
            detail::check(mlff_model_warning(handle_, i, &code, &message));
            result.push_back(Warning{code, message});
        }
        return result;
    }

    /** Evaluates one structure. */
    Results compute(const System &system, const Request &request = Request()) {
        const MlffSystem view = system.to_c();
        Results results;
        MlffResults out{};
        results.prepare(system.n_atoms(), request, out);
        detail::check(mlff_model_compute(handle_, &view, &out));
        results.energy = out.energy;
        return results;
    }

    /** Evaluates a molecule (no cell, every atom local); positions hold 3 values per atom. */
    Results compute(const std::vector<std::int32_t> &numbers, const std::vector<double> &positions,
                    const Request &request = Request()) {
        System system;
        system.numbers = numbers;
        system.positions = positions;
        return compute(system, request);
    }

    /** The C call itself, for callers that manage their own buffers. */
    void compute(const MlffSystem &system, MlffResults &results) {
        detail::check(mlff_model_compute(handle_, &system, &results));
    }

    /** Evaluates independent structures in one pass; equal to one-by-one compute(). */
    std::vector<Results> compute_batch(const std::vector<System> &systems, const Request &request = Request()) {
        std::vector<MlffSystem> views;
        views.reserve(systems.size());
        for (const System &system : systems) {
            views.push_back(system.to_c());
        }
        std::vector<Results> results(systems.size());
        std::vector<MlffResults> outs(systems.size());
        for (std::size_t k = 0; k < systems.size(); ++k) {
            results[k].prepare(systems[k].n_atoms(), request, outs[k]);
        }
        detail::check(mlff_model_compute_batch(handle_, views.data(), views.size(), outs.data()));
        for (std::size_t k = 0; k < systems.size(); ++k) {
            results[k].energy = outs[k].energy;
        }
        return results;
    }

    /**
     * Positions in and forces out in GPU memory, ordered on `cuda_stream` (a CUstream of
     * the model's context; nullptr = the legacy default stream); returns the energy in eV.
     * See mlff_model_compute_device for the contract.
     */
    double compute_device(const MlffDeviceSystem &system, double *device_forces, void *cuda_stream,
                          double *host_virial = nullptr) {
        MlffDeviceResults results{};
        results.forces = device_forces;
        results.virial = host_virial;
        detail::check(mlff_model_compute_device(handle_, &system, &results, cuda_stream));
        return results.energy;
    }

    /** The C batch call itself. */
    void compute_batch(const MlffSystem *systems, std::size_t n, MlffResults *results) {
        detail::check(mlff_model_compute_batch(handle_, systems, n, results));
    }

private:
    Model() = default;

    void require_handle(const char *what) const {
        if (handle_ == nullptr) {
            throw Error(MLFF_ERR_NULL_POINTER, std::string("mlff::Model::") + what + ": the model was moved from");
        }
    }

    MlffModel *handle_ = nullptr;
};

} // namespace mlff

#endif // MLFF_HPP
