// libmlff_openmm_cuda.so: MlffForce's device path on OpenMM's CUDA platform.
//
// Per step, on OpenMM's stream and in OpenMM's CUDA context, with no copy through
// the host: a small kernel gathers the model atoms' positions from OpenMM's posq
// (atoms are in OpenMM's sorted order; the atom index array maps each slot back to
// its System particle, and a particle -> model atom table picks the ML subset) into
// a buffer of f64 Å; mlff_model_compute_device evaluates the model there and writes
// the forces (eV/Å) to a second buffer; a second kernel adds them, converted to
// kJ/mol/nm and 64-bit fixed point (x 2^32), to OpenMM's force buffer. The energy
// comes back to the host with the library's one small download.
//
// The mlff model is created in OpenMM's own CUDA context (OpenMM 8.6 creates one with
// cuCtxCreate; mlff's default is the device's primary context, whose memory OpenMM's
// kernels could not use), with mlff_model_create_in_cuda_context.
//
// Loaded by `import mlff_openmm` (Platform.loadPluginLibrary), or in C++ by the first
// MlffForce initialised on the CUDA platform (from libmlff_openmm.so's folder).

#include "mlff.h"
#include "mlff_openmm/MlffForce.h"
#include "mlff_openmm/internal/MlffKernels.h"

#include "openmm/KernelFactory.h"
#include "openmm/OpenMMException.h"
#include "openmm/Platform.h"
#include "openmm/common/ContextSelector.h"
#include "openmm/cuda/CudaArray.h"
#include "openmm/cuda/CudaContext.h"
#include "openmm/cuda/CudaPlatform.h"
#include "openmm/internal/ContextImpl.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

using namespace mlff_openmm;
using OpenMM::ContextImpl;
using OpenMM::CudaContext;
using OpenMM::OpenMMException;

namespace {

// Compiled by OpenMM (CudaContext::createModule), which defines real/real4 for the
// Context's precision and USE_MIXED_PRECISION in mixed precision.
const char* const kernelSource = R"(
extern "C" __global__ void mlffGatherPositions(const real4* __restrict__ posq,
#ifdef USE_MIXED_PRECISION
                                               const real4* __restrict__ posqCorrection,
#endif
                                               const int* __restrict__ atomIndex,
                                               const int* __restrict__ modelIndex, int numAtoms,
                                               double* __restrict__ positions) {
    for (int slot = blockIdx.x * blockDim.x + threadIdx.x; slot < numAtoms; slot += blockDim.x * gridDim.x) {
        const int m = modelIndex[atomIndex[slot]];
        if (m < 0)
            continue;
        const real4 p = posq[slot];
#ifdef USE_MIXED_PRECISION
        const real4 c = posqCorrection[slot];
        positions[3 * m] = 10.0 * ((double) p.x + (double) c.x);
        positions[3 * m + 1] = 10.0 * ((double) p.y + (double) c.y);
        positions[3 * m + 2] = 10.0 * ((double) p.z + (double) c.z);
#else
        positions[3 * m] = 10.0 * (double) p.x;
        positions[3 * m + 1] = 10.0 * (double) p.y;
        positions[3 * m + 2] = 10.0 * (double) p.z;
#endif
    }
}

// forces: eV/A per model atom; scale: (kJ/mol/nm per eV/A) * 2^32. Each slot is
// owned by one thread, and the kernel runs on OpenMM's stream between its own force
// kernels, so plain additions are safe.
extern "C" __global__ void mlffAddForces(const double* __restrict__ forces, long long* __restrict__ forceBuffer,
                                         const int* __restrict__ atomIndex, const int* __restrict__ modelIndex,
                                         int numAtoms, int paddedNumAtoms, double scale) {
    for (int slot = blockIdx.x * blockDim.x + threadIdx.x; slot < numAtoms; slot += blockDim.x * gridDim.x) {
        const int m = modelIndex[atomIndex[slot]];
        if (m < 0)
            continue;
        forceBuffer[slot] += (long long) (forces[3 * m] * scale);
        forceBuffer[slot + paddedNumAtoms] += (long long) (forces[3 * m + 1] * scale);
        forceBuffer[slot + 2 * paddedNumAtoms] += (long long) (forces[3 * m + 2] * scale);
    }
}
)";

class CudaCalcMlffForceKernel : public CalcMlffForceKernel {
public:
    CudaCalcMlffForceKernel(const std::string& name, const OpenMM::Platform& platform, CudaContext& cu)
        : CalcMlffForceKernel(name, platform), cu(cu) {}

    ~CudaCalcMlffForceKernel() override {
        if (model != nullptr) {
            OpenMM::ContextSelector selector(cu);
            mlff_model_destroy(model);
        }
    }

    void initialize(const OpenMM::System& system, const MlffForce& force, const std::vector<int>& particles,
                    const std::vector<int32_t>& atomicNumbers) override {
        OpenMM::ContextSelector selector(cu);
        numbers = atomicNumbers;
        numModelAtoms = static_cast<int>(particles.size());
        periodic = force.usesPeriodicBoundaryConditions();

        MlffOptions options = mlff_options_default();
        options.device = MLFF_DEVICE_CUDA;
        options.device_index = cu.getDeviceIndex();
        const std::string& precision = force.getPrecision();
        options.precision = precision == "f64"     ? MLFF_PRECISION_F64
                            : precision == "mixed" ? MLFF_PRECISION_MIXED
                                                   : MLFF_PRECISION_F32;
        options.num_threads = static_cast<uint32_t>(force.getNumThreads());
        if (mlff_model_create_in_cuda_context(force.getModelPath().c_str(), &options, cu.getContext(), &model) != MLFF_OK)
            throw OpenMMException("MlffForce: cannot open model \"" + force.getModelPath() + "\" on OpenMM's CUDA device: " +
                                  mlff_last_error());

        std::vector<int> modelIndexHost(system.getNumParticles(), -1);
        for (size_t i = 0; i < particles.size(); i++)
            modelIndexHost[particles[i]] = static_cast<int>(i);
        modelIndex.initialize<int>(cu, modelIndexHost.size(), "mlffModelIndex");
        modelIndex.upload(modelIndexHost);
        positions.initialize<double>(cu, 3 * static_cast<size_t>(std::max(numModelAtoms, 1)), "mlffPositions");
        forces.initialize<double>(cu, 3 * static_cast<size_t>(std::max(numModelAtoms, 1)), "mlffForces");

        CUmodule module = cu.createModule(kernelSource, std::map<std::string, std::string>());
        gatherKernel = cu.getKernel(module, "mlffGatherPositions");
        addForcesKernel = cu.getKernel(module, "mlffAddForces");
    }

    double execute(ContextImpl& context, bool includeForces, bool includeEnergy) override {
        (void) context;
        (void) includeEnergy;  // the energy comes with every evaluation
        OpenMM::ContextSelector selector(cu);
        int numAtoms = cu.getNumAtoms();
        if (cu.getUseMixedPrecision()) {
            void* args[] = {&cu.getPosq().getDevicePointer(), &cu.getPosqCorrection().getDevicePointer(),
                            &cu.getAtomIndexArray().getDevicePointer(), &modelIndex.getDevicePointer(), &numAtoms,
                            &positions.getDevicePointer()};
            cu.executeKernel(gatherKernel, args, numAtoms);
        } else {
            void* args[] = {&cu.getPosq().getDevicePointer(), &cu.getAtomIndexArray().getDevicePointer(),
                            &modelIndex.getDevicePointer(), &numAtoms, &positions.getDevicePointer()};
            cu.executeKernel(gatherKernel, args, numAtoms);
        }

        double cell[9];
        MlffDeviceSystem system{};
        system.n_atoms = static_cast<size_t>(numModelAtoms);
        system.n_local = system.n_atoms;
        system.numbers = numbers.data();
        system.positions = reinterpret_cast<const double*>(positions.getDevicePointer());
        if (periodic) {
            // OpenMM's box vectors are the lattice vectors (rows), in reduced form.
            OpenMM::Vec3 box[3];
            cu.getPeriodicBoxVectors(box[0], box[1], box[2]);
            for (int a = 0; a < 3; a++)
                for (int k = 0; k < 3; k++)
                    cell[3 * a + k] = box[a][k] * ANGSTROM_PER_NM;
            system.cell = cell;
            system.pbc[0] = system.pbc[1] = system.pbc[2] = true;
        }
        MlffDeviceResults results{};
        results.forces = includeForces ? reinterpret_cast<double*>(forces.getDevicePointer()) : nullptr;
        if (mlff_model_compute_device(model, &system, &results, cu.getCurrentStream()) != MLFF_OK)
            throw OpenMMException(std::string("MlffForce: ") + mlff_last_error());

        if (includeForces) {
            int paddedNumAtoms = cu.getPaddedNumAtoms();
            double scale = KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM * 4294967296.0;  // eV/A -> kJ/mol/nm, x 2^32
            void* args[] = {&forces.getDevicePointer(), &cu.getLongForceBuffer().getDevicePointer(),
                            &cu.getAtomIndexArray().getDevicePointer(), &modelIndex.getDevicePointer(), &numAtoms,
                            &paddedNumAtoms, &scale};
            cu.executeKernel(addForcesKernel, args, numAtoms);
        }
        return results.energy * KJ_PER_MOL_PER_EV;
    }

private:
    CudaContext& cu;
    MlffModel* model = nullptr;
    std::vector<int32_t> numbers;
    int numModelAtoms = 0;
    bool periodic = false;
    OpenMM::CudaArray modelIndex;  // System particle -> model atom, or -1
    OpenMM::CudaArray positions;   // model atoms, A, xyz, f64
    OpenMM::CudaArray forces;      // model atoms, eV/A, xyz, f64
    CUfunction gatherKernel = nullptr;
    CUfunction addForcesKernel = nullptr;
};

class CudaMlffKernelFactory : public OpenMM::KernelFactory {
public:
    OpenMM::KernelImpl* createKernelImpl(std::string name, const OpenMM::Platform& platform,
                                         ContextImpl& context) const override {
        auto& data = *static_cast<OpenMM::CudaPlatform::PlatformData*>(context.getPlatformData());
        if (name != CalcMlffForceKernel::Name())
            throw OpenMMException("libmlff_openmm_cuda: unknown kernel " + name);
        if (data.contexts.size() != 1)
            throw OpenMMException("MlffForce: the CUDA device path runs on one GPU, this Context uses " +
                                  std::to_string(data.contexts.size()) + " (call setUseDevicePath(false))");
        return new CudaCalcMlffForceKernel(name, platform, *data.contexts[0]);
    }
};

} // namespace

extern "C" __attribute__((visibility("default"))) void registerPlatforms() {
}

extern "C" __attribute__((visibility("default"))) void registerKernelFactories() {
    try {
        OpenMM::Platform& platform = OpenMM::Platform::getPlatformByName("CUDA");
        platform.registerKernelFactory(CalcMlffForceKernel::Name(), new CudaMlffKernelFactory());
    } catch (const std::exception&) {
        // No CUDA platform in this process: nothing to register.
    }
}
