pub struct SimArgs;
