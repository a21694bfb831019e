"""What every method is built from: backbones (CNNs and ViTs), the BNNeck, the shared ReID losses, the method
interface (base.ReidMethod), the deployed model, its complexity and ONNX export, and the checkpoint file.
The methods themselves are packages of occreid.methods (`occreid.methods.build_model`)."""
