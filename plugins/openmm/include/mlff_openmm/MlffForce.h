#ifndef MLFF_OPENMM_MLFFFORCE_H_
#define MLFF_OPENMM_MLFFFORCE_H_

// MlffForce: an OpenMM Force that evaluates an mlff model (a distilled
// PaiNN-style student) on all particles of a System or on a subset of them.
//
// The Force only holds settings; the model is opened when a Context is created
// (one model handle per Context, see internal/MlffForceImpl.h). Units follow
// OpenMM (nm, kJ/mol); the model works in Å and eV.

#include "openmm/Context.h"
#include "openmm/Force.h"

#include <string>
#include <vector>

namespace mlff_openmm {

/// 1 eV in kJ/mol: e * N_A / 1000, exact in SI since 2019.
constexpr double KJ_PER_MOL_PER_EV = 96.48533212331;
/// 1 nm in Å.
constexpr double ANGSTROM_PER_NM = 10.0;

class MlffForce : public OpenMM::Force {
public:
    /**
     * @param modelPath  the model file (.safetensors), opened when a Context is created
     * @param numbers    atomic number of each particle the model sees: one per System
     *                   particle when atoms is empty, else one per entry of atoms
     * @param atoms      indices of the particles the model sees (ML/MM); empty = all.
     *                   Other particles get no force from this Force.
     * @param device     "auto", "cpu" or "cuda"
     * @param precision  "f32", "f64" or "mixed"
     * @throws OpenMM::OpenMMException on an unknown device or precision, duplicate or
     *         negative atom indices, or a size mismatch between numbers and atoms
     */
    MlffForce(const std::string& modelPath, const std::vector<int>& numbers,
              const std::vector<int>& atoms = std::vector<int>(),
              const std::string& device = "auto", const std::string& precision = "f32");

    const std::string& getModelPath() const { return modelPath; }
    const std::vector<int>& getNumbers() const { return numbers; }
    /// The particle subset; empty means every particle of the System.
    const std::vector<int>& getAtoms() const { return atoms; }
    const std::string& getDevice() const { return device; }
    const std::string& getPrecision() const { return precision; }

    /// GPU ordinal when the device is CUDA (default 0).
    int getDeviceIndex() const { return deviceIndex; }
    void setDeviceIndex(int index);
    /// CPU threads the library may use; 0 lets the library choose (default).
    int getNumThreads() const { return numThreads; }
    void setNumThreads(int threads);

    /**
     * On the CUDA platform (with libmlff_openmm_cuda.so loaded, which `import
     * mlff_openmm` does), the force is computed on OpenMM's device arrays: positions
     * are gathered on the GPU, the model runs in OpenMM's CUDA context and stream,
     * and forces are added to OpenMM's fixed-point force buffer, with no copy
     * through the host (default true). False computes through the host
     * (CustomCPPForceImpl) on every platform, e.g. to measure the difference.
     * Ignored on other platforms, and when the device is "cpu".
     */
    void setUseDevicePath(bool use) { useDevicePath = use; }
    bool getUseDevicePath() const { return useDevicePath; }
    /**
     * How this force is computed in `context`: "device" (CUDA platform kernel) or
     * "host" (positions and forces through the host).
     * @throws OpenMM::OpenMMException if this force is not part of the context's System
     */
    std::string getComputePath(OpenMM::Context& context) const;

    /// With periodic boundary conditions the model sees the Context's box vectors.
    void setUsesPeriodicBoundaryConditions(bool periodic) { usePeriodic = periodic; }
    bool usesPeriodicBoundaryConditions() const override { return usePeriodic; }

protected:
    OpenMM::ForceImpl* createImpl() const override;

private:
    std::string modelPath;
    std::vector<int> numbers;
    std::vector<int> atoms;
    std::string device;
    std::string precision;
    int deviceIndex = 0;
    int numThreads = 0;
    bool usePeriodic = false;
    bool useDevicePath = true;
};

} // namespace mlff_openmm

#endif // MLFF_OPENMM_MLFFFORCE_H_
