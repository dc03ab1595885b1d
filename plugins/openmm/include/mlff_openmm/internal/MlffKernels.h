#ifndef MLFF_OPENMM_MLFFKERNELS_H_
#define MLFF_OPENMM_MLFFKERNELS_H_

// The platform kernel of MlffForce's device path. Only the CUDA platform has one
// (libmlff_openmm_cuda.so, platforms/cuda); on other platforms, or when it is not
// loaded, MlffForceImpl computes through the host (CustomCPPForceImpl).

#include "mlff_openmm/MlffForce.h"
#include "openmm/KernelImpl.h"
#include "openmm/System.h"
#include "openmm/internal/ContextImpl.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mlff_openmm {

class CalcMlffForceKernel : public OpenMM::KernelImpl {
public:
    static std::string Name() { return "CalcMlffForce"; }
    CalcMlffForceKernel(const std::string& name, const OpenMM::Platform& platform) : KernelImpl(name, platform) {}
    ~CalcMlffForceKernel() override;  // out of line: the key function (one typeinfo, in libmlff_openmm)
    /**
     * @param particles  System index of each model atom
     * @param numbers    atomic number of each model atom
     * @throws OpenMM::OpenMMException with the library's message when the model cannot be opened
     */
    virtual void initialize(const OpenMM::System& system, const MlffForce& force, const std::vector<int>& particles,
                            const std::vector<int32_t>& numbers) = 0;
    /** Adds the forces (if includeForces) to the platform's force buffer; returns the energy in kJ/mol. */
    virtual double execute(OpenMM::ContextImpl& context, bool includeForces, bool includeEnergy) = 0;
};

} // namespace mlff_openmm

#endif // MLFF_OPENMM_MLFFKERNELS_H_
