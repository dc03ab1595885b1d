#include "mlff_openmm/internal/MlffForceImpl.h"
#include "mlff_openmm/internal/MlffKernels.h"

#include "openmm/OpenMMException.h"
#include "openmm/System.h"
#include "openmm/Platform.h"
#include "openmm/internal/ContextImpl.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <string>

using namespace mlff_openmm;
using OpenMM::ContextImpl;
using OpenMM::OpenMMException;
using OpenMM::Vec3;

MlffForceImpl::MlffForceImpl(const MlffForce& owner) : CustomCPPForceImpl(owner), owner(owner) {
}

MlffForceImpl::~MlffForceImpl() = default;

CalcMlffForceKernel::~CalcMlffForceKernel() = default;

namespace {

// C++ programs get the device path without doing anything: the first MlffForce on
// the CUDA platform loads libmlff_openmm_cuda.so from this library's folder (where
// the build and the install put it), unless it is registered already (Python's
// `import mlff_openmm` does that). A failure leaves the host path.
void loadCudaPluginOnce() {
    static std::once_flag once;
    std::call_once(once, [] {
        Dl_info info;
        if (dladdr(reinterpret_cast<void*>(&loadCudaPluginOnce), &info) == 0 || info.dli_fname == nullptr)
            return;
        std::string path = info.dli_fname;
        path = path.substr(0, path.rfind('/') + 1) + "libmlff_openmm_cuda.so";
        if (access(path.c_str(), R_OK) != 0)
            return;
        try {
            OpenMM::Platform::loadPluginLibrary(path);
        } catch (const std::exception&) {
            // No device path: MlffForce computes through the host.
        }
    });
}

} // namespace

void MlffForceImpl::initialize(ContextImpl& context) {
    const int numParticles = context.getSystem().getNumParticles();
    const std::vector<int>& atoms = owner.getAtoms();
    const std::vector<int>& ownerNumbers = owner.getNumbers();
    particles.clear();
    if (atoms.empty()) {
        if (ownerNumbers.size() != static_cast<size_t>(numParticles))
            throw OpenMMException("MlffForce: " + std::to_string(ownerNumbers.size()) +
                                  " atomic numbers but the System has " + std::to_string(numParticles) +
                                  " particles (give one per particle, or a particle subset in atoms)");
        for (int i = 0; i < numParticles; i++)
            particles.push_back(i);
    } else {
        for (int index : atoms)
            if (index >= numParticles)
                throw OpenMMException("MlffForce: particle " + std::to_string(index) + " in atoms is out of range (the System has " +
                                      std::to_string(numParticles) + " particles)");
        particles = atoms;
    }
    numbers.assign(ownerNumbers.begin(), ownerNumbers.end());
    periodic = owner.usesPeriodicBoundaryConditions();

    // The device path: a CUDA platform with the kernel plugin loaded, unless the user
    // asked for the host path or the CPU engine.
    OpenMM::Platform& platform = context.getPlatform();
    const bool wanted = owner.getUseDevicePath() && owner.getDevice() != "cpu" && platform.getName() == "CUDA";
    if (wanted && !platform.supportsKernels({CalcMlffForceKernel::Name()}))
        loadCudaPluginOnce();
    // One GPU only ("DeviceIndex" "0,1" spreads a Context over two).
    devicePath = wanted && platform.supportsKernels({CalcMlffForceKernel::Name()}) &&
                 platform.getPropertyValue(context.getOwner(), "DeviceIndex").find(',') == std::string::npos;
    if (devicePath) {
        kernel = platform.createKernel(CalcMlffForceKernel::Name(), context);
        kernel.getAs<CalcMlffForceKernel>().initialize(context.getSystem(), owner, particles, numbers);
        return;
    }
    positionsA.assign(3 * particles.size(), 0.0);
    forcesEvA.assign(3 * particles.size(), 0.0);

    mlff::Options options;
    const std::string& device = owner.getDevice();
    options.device = device == "cpu" ? MLFF_DEVICE_CPU : device == "cuda" ? MLFF_DEVICE_CUDA : MLFF_DEVICE_AUTO;
    const std::string& precision = owner.getPrecision();
    options.precision = precision == "f64" ? MLFF_PRECISION_F64 : precision == "mixed" ? MLFF_PRECISION_MIXED : MLFF_PRECISION_F32;
    options.device_index = owner.getDeviceIndex();
    options.num_threads = static_cast<uint32_t>(owner.getNumThreads());
    try {
        model.emplace(owner.getModelPath(), options);
    } catch (const mlff::Error& error) {
        throw OpenMMException("MlffForce: cannot open model \"" + owner.getModelPath() + "\": " + error.what());
    }

    CustomCPPForceImpl::initialize(context);
}

double MlffForceImpl::calcForcesAndEnergy(ContextImpl& context, bool includeForces, bool includeEnergy, int groups) {
    if (!devicePath)
        return CustomCPPForceImpl::calcForcesAndEnergy(context, includeForces, includeEnergy, groups);
    if ((groups & (1 << owner.getForceGroup())) == 0)
        return 0.0;
    return kernel.getAs<CalcMlffForceKernel>().execute(context, includeForces, includeEnergy);
}

double MlffForceImpl::computeForce(ContextImpl& context, const std::vector<Vec3>& positions, std::vector<Vec3>& forces) {
    const size_t numAtoms = particles.size();
    for (size_t i = 0; i < numAtoms; i++) {
        const Vec3& p = positions[particles[i]];
        for (int k = 0; k < 3; k++)
            positionsA[3 * i + k] = p[k] * ANGSTROM_PER_NM;
    }
    MlffSystem system{};
    system.n_atoms = numAtoms;
    system.n_local = numAtoms;
    system.numbers = numbers.data();
    system.positions = positionsA.data();
    double cell[9];
    if (periodic) {
        // OpenMM box vectors are the lattice vectors (rows), already in reduced form.
        Vec3 box[3];
        context.getPeriodicBoxVectors(box[0], box[1], box[2]);
        for (int a = 0; a < 3; a++)
            for (int k = 0; k < 3; k++)
                cell[3 * a + k] = box[a][k] * ANGSTROM_PER_NM;
        system.cell = cell;
        system.pbc[0] = system.pbc[1] = system.pbc[2] = true;
    } else {
        system.cell = nullptr;
        system.pbc[0] = system.pbc[1] = system.pbc[2] = false;
    }
    MlffResults results{};
    results.forces = forcesEvA.data();
    try {
        model->compute(system, results);
    } catch (const mlff::Error& error) {
        throw OpenMMException(std::string("MlffForce: ") + error.what());
    }

    // Particles outside the subset get no force from this Force.
    std::fill(forces.begin(), forces.end(), Vec3());
    const double forceScale = KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM;  // eV/Å -> kJ/mol/nm
    for (size_t i = 0; i < numAtoms; i++)
        forces[particles[i]] = Vec3(forcesEvA[3 * i], forcesEvA[3 * i + 1], forcesEvA[3 * i + 2]) * forceScale;
    return results.energy * KJ_PER_MOL_PER_EV;
}
