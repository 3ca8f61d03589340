# Declarations of the fused gate passes in rnn_math.h (see that file for what each one computes).
cdef extern from "rnn_math.h" nogil:
    void fr_lstm_fwd_f32(Py_ssize_t B, Py_ssize_t H, float *gates, Py_ssize_t ldg,
                         const float *bias, const float *c_prev, float *c, float *h,
                         Py_ssize_t ldh)
    void fr_lstm_fwd_f64(Py_ssize_t B, Py_ssize_t H, double *gates, Py_ssize_t ldg,
                         const double *bias, const double *c_prev, double *c, double *h,
                         Py_ssize_t ldh)
    void fr_gru_fwd_f32(Py_ssize_t B, Py_ssize_t H, float *gates, const float *bias_x,
                        const float *hg, const float *b_hn, const float *h_prev, Py_ssize_t ldhp,
                        float *h, Py_ssize_t ldh, float *hn)
    void fr_gru_fwd_f64(Py_ssize_t B, Py_ssize_t H, double *gates, const double *bias_x,
                        const double *hg, const double *b_hn, const double *h_prev,
                        Py_ssize_t ldhp, double *h, Py_ssize_t ldh, double *hn)
    void fr_gru_rz_f32(Py_ssize_t B, Py_ssize_t H, float *gates, const float *bias_x,
                       const float *h_prev, Py_ssize_t ldhp, float *rh)
    void fr_gru_rz_f64(Py_ssize_t B, Py_ssize_t H, double *gates, const double *bias_x,
                       const double *h_prev, Py_ssize_t ldhp, double *rh)
    void fr_gru_n_f32(Py_ssize_t B, Py_ssize_t H, float *gates, const float *bias_x,
                      const float *h_prev, Py_ssize_t ldhp, float *h, Py_ssize_t ldh)
    void fr_gru_n_f64(Py_ssize_t B, Py_ssize_t H, double *gates, const double *bias_x,
                      const double *h_prev, Py_ssize_t ldhp, double *h, Py_ssize_t ldh)
