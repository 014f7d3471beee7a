//! Adam on the input batch and ReduceLROnPlateau, with PyTorch's defaults so that zeroq's distillation
//! follows the reference recipe step for step.

/// Adam (β1 0.9, β2 0.999, ε 1e-8, no weight decay) over a flat parameter vector.
pub struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    /// State for `n` parameters.
    pub fn new(n: usize) -> Self {
        Self { m: vec![0.0; n], v: vec![0.0; n], t: 0 }
    }

    /// One step: `x ← x − lr·m̂/(√v̂ + ε)`.
    pub fn step(&mut self, x: &mut [f32], grad: &[f32], lr: f32) {
        self.step_scaled(x, grad, lr, &[]);
    }

    /// One step with a per-parameter learning-rate factor `scale[i]` (none when `scale` is empty): the
    /// input prior's std per channel, so that a step means the same on every preprocessing.
    pub fn step_scaled(&mut self, x: &mut [f32], grad: &[f32], lr: f32, scale: &[f32]) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        const EPS: f32 = 1e-8;
        self.t += 1;
        let (c1, c2) = (1.0 - B1.powi(self.t), 1.0 - B2.powi(self.t));
        for (i, ((xi, &g), (m, v))) in x.iter_mut().zip(grad).zip(self.m.iter_mut().zip(self.v.iter_mut())).enumerate() {
            *m = B1 * *m + (1.0 - B1) * g;
            *v = B2 * *v + (1.0 - B2) * g * g;
            let lr = if scale.is_empty() { lr } else { lr * scale[i] };
            *xi -= lr * (*m / c1) / ((*v / c2).sqrt() + EPS);
        }
    }
}

/// ReduceLROnPlateau in "min" mode with a relative threshold of 1e-4 and no cooldown (PyTorch's defaults).
pub struct Plateau {
    /// Current learning rate.
    pub lr: f32,
    factor: f32,
    patience: usize,
    min_lr: f32,
    best: f32,
    bad: usize,
}

impl Plateau {
    /// Starts at `lr`.
    pub fn new(lr: f32, factor: f32, patience: usize, min_lr: f32) -> Self {
        Self { lr, factor, patience, min_lr, best: f32::INFINITY, bad: 0 }
    }

    /// Records a loss; lowers the rate after more than `patience` steps without improvement.
    pub fn observe(&mut self, loss: f32) {
        if loss < self.best * (1.0 - 1e-4) {
            self.best = loss;
            self.bad = 0;
        } else {
            self.bad += 1;
        }
        if self.bad > self.patience {
            self.lr = (self.lr * self.factor).max(self.min_lr);
            self.bad = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_by_lr_against_the_gradient_sign() {
        // With bias correction, the first Adam step is lr·g/|g| (up to ε).
        let mut x = vec![1.0, -2.0, 0.5];
        let mut a = Adam::new(3);
        a.step(&mut x, &[3.0, -0.01, 0.0], 0.5);
        assert!((x[0] - 0.5).abs() < 1e-6 && (x[1] + 1.5).abs() < 1e-4 && x[2] == 0.5, "{x:?}");
    }

    #[test]
    fn plateau_reduces_after_patience_and_respects_min_lr() {
        let mut p = Plateau::new(0.5, 0.1, 2, 1e-2);
        p.observe(1.0);
        for _ in 0..3 {
            p.observe(1.0);
        }
        assert!((p.lr - 0.05).abs() < 1e-7, "{}", p.lr);
        for _ in 0..3 {
            p.observe(1.0);
        }
        assert!((p.lr - 0.01).abs() < 1e-7, "{}", p.lr);
        for _ in 0..3 {
            p.observe(1.0);
        }
        assert!((p.lr - 0.01).abs() < 1e-7, "min lr: {}", p.lr);
    }
}
