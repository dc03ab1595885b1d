#ifndef MLFF_OPENMM_MLFFFORCEPROXY_H_
#define MLFF_OPENMM_MLFFFORCEPROXY_H_

// XML serialization of MlffForce: keeps the model path (as given, not the model
// itself) and every setting. Registered when the plugin library is loaded.

#include "openmm/serialization/SerializationProxy.h"

namespace mlff_openmm {

class MlffForceProxy : public OpenMM::SerializationProxy {
public:
    MlffForceProxy();
    void serialize(const void* object, OpenMM::SerializationNode& node) const override;
    void* deserialize(const OpenMM::SerializationNode& node) const override;
};

} // namespace mlff_openmm

#endif // MLFF_OPENMM_MLFFFORCEPROXY_H_
